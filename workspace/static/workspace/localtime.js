// Times in the viewer's own time zone, with UTC on hover. The server writes every
// <time datetime="ISO"> in UTC (readable without JavaScript); this module rewrites the
// text in local time and keeps the UTC moment in the element's title. data-local="time"
// shows the time of day only; any other <time> shows the date too.

const TIME = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
});

// "2026-12-07 02:31:05 UTC": the moment as the server and the exports write it.
export function utcText(iso) {
  return `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function localText(iso, kind = "datetime") {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  return (kind === "time" ? TIME : DATE_TIME).format(moment);
}

// Rewrite one <time> (its dateTime set) in local time, UTC in its title.
export function localize(element) {
  const iso = element.dateTime || element.getAttribute("datetime");
  const text = iso ? localText(iso, element.dataset.local) : "";
  if (!text) return element;
  element.textContent = text;
  element.title = utcText(iso);
  return element;
}

// A new <time> for a moment, in local time with UTC on hover.
export function timeElement(iso, kind = "datetime") {
  const element = document.createElement("time");
  element.dateTime = iso;
  if (kind === "time") element.dataset.local = "time";
  return localize(element);
}

for (const element of document.querySelectorAll("time[datetime]")) localize(element);
