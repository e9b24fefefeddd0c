// Building the page's elements and writing the domain's values for people.

export const $ = (id) => document.getElementById(id);

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export const FORWARD = ["CREATE_ORDER", "RESERVE_STOCK", "CONFIRM_ORDER", "CREATE_SHIPMENT"];
export const ENDED = new Set(["COMPLETED", "FAILED"]);
// Moving forward, not yet completed: what the filter's "Running" stands for.
export const RUNNING = [
  "ORDER_CREATED",
  "STOCK_RESERVING",
  "STOCK_RESERVED",
  "ORDER_CONFIRMING",
  "ORDER_CONFIRMED",
  "SHIPMENT_CREATING",
];

// CREATE_ORDER -> "Create order"
export const words = (name) => name.charAt(0) + name.slice(1).toLowerCase().replaceAll("_", " ");

export const at = (iso) => Date.parse(iso);

export function time(iso, withDate = false) {
  if (!iso) return "—";
  const moment = new Date(iso);
  const shown = withDate
    ? moment.toLocaleString([], { hour12: false })
    : moment.toLocaleTimeString([], { hour12: false });
  return element("time", { datetime: iso, title: moment.toISOString() }, shown);
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export const between = (start, end) => (start && end ? duration(at(end) - at(start)) : "—");

export const count = (n) => (n ?? 0).toLocaleString();

// The status as text, with a shape drawn by the stylesheet beside it: colour is never the only sign.
export const statusBadge = (status) =>
  element("span", { class: `status status-${status.toLowerCase()}` }, status);

export const sagaLink = (id) => element("a", { href: `#/sagas/${id}`, class: "saga-id" }, element("code", {}, id));
