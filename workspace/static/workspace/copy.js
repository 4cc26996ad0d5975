// Copy buttons: <button type="button" data-copy="ID"> copies the text of the element #ID
// (its value for a form field) and says so beside the button, to screen readers too.
// The Clipboard API needs a secure context (https or localhost); elsewhere the text is
// selected and copied with the older command, or left selected for Ctrl+C.

function textOf(element) {
  return ("value" in element ? element.value : element.textContent).trim();
}

function selectContents(element) {
  if ("select" in element) {
    element.select();
    return;
  }
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copy(element) {
  const text = textOf(element);
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection
    }
  }
  selectContents(element);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

function statusFor(button) {
  let status = button.nextElementSibling;
  if (!status || !status.classList.contains("copy-status")) {
    status = document.createElement("span");
    status.className = "copy-status";
    status.setAttribute("role", "status");
    button.after(status);
  }
  return status;
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  const status = statusFor(button);
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const copied = await copy(source);
    status.textContent = copied ? "Copied" : "Selected: press Ctrl+C to copy";
    window.setTimeout(() => { status.textContent = ""; }, 4000);
  });
}
