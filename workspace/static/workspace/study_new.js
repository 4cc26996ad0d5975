// The "New study" and "Add scenes" forms: "Show the reference" only where it applies
// (the pairwise design), a zip over the upload limit refused before it is sent, and a
// note while it uploads.

const form = document.getElementById("new-study");
const showReference = document.getElementById("id_show_reference");
const fileInput = document.getElementById("id_file");
const sizeError = document.getElementById("id_file-size");
const sending = document.getElementById("sending");
const maxBytes = Number(form.dataset.maxBytes);

function designChanged() {
  if (!showReference) return;
  const chosen = form.querySelector("input[name=design]:checked");
  const pairwise = chosen !== null && chosen.value === "pairwise";
  showReference.disabled = !pairwise;
  if (!pairwise) showReference.checked = false;
}

function mib(bytes) {
  return `${(bytes / 1024 ** 2).toLocaleString(undefined, { maximumFractionDigits: 1 })} MiB`;
}

function fileTooLarge() {
  const file = fileInput.files[0];
  const tooLarge = file !== undefined && file.size > maxBytes;
  sizeError.hidden = !tooLarge;
  sizeError.textContent = tooLarge
    ? `${file.name} is ${mib(file.size)}, over the upload limit of ${mib(maxBytes)}.`
    : "";
  fileInput.setAttribute("aria-invalid", tooLarge ? "true" : "false");
  return tooLarge;
}

for (const radio of form.querySelectorAll("input[name=design]")) {
  radio.addEventListener("change", designChanged);
}
fileInput.addEventListener("change", fileTooLarge);
form.addEventListener("submit", (event) => {
  if (fileTooLarge()) {
    event.preventDefault();
    fileInput.focus();
    return;
  }
  const file = fileInput.files[0];
  document.getElementById("create").disabled = true;
  sending.textContent = file ? `Uploading ${file.name} (${mib(file.size)})…` : "Starting…";
});
designChanged();
