// Calls to the gateway with the session cookie; a 401 anywhere sends the user back to sign-in.

import { hasWord, t } from "./i18n.js";

// The code a body-less answer stands for (a proxy's 502, a gateway that died mid-answer).
const STATUS_CODES = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large", 422: "unprocessable", 429: "rate_limited", 503: "unavailable" };

// A refusal for people: `message` is the catalogue's sentence for the code (error.<code>), never
// the server's developer text, which stays in `said` (for views that recognise a refusal) and
// in the console.
export class ApiError extends Error {
  constructor(status, code, said, detail = null) {
    const key = hasWord(`error.${code}`) ? `error.${code}` : "error.generic";
    super(t(key));
    this.status = status;
    this.code = code;
    this.said = said || "";
    this.detail = detail;
  }
}

// Who the gateway lets acknowledge, assign and resolve alerts (gateway/deps.py: Technician) and
// create or delete maintenance windows (Admin); the page hides what a role cannot use.
export const ALERT_ROLES = ["admin", "operator", "technician"];
export const MAINTENANCE_ROLES = ["admin"];

let onUnauthorized = () => {};

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function api(path, { method = "GET", body } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body !== undefined ? { "Content-Type": "application/json", Accept: "application/json" } : { Accept: "application/json" },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (ex) {
    console.warn(`${method} ${path}:`, ex);
    throw new ApiError(0, "network", String(ex));
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: STATUS_CODES[res.status] || String(res.status), message: res.statusText };
    console.warn(`${method} ${path}: ${res.status} ${err.code}: ${err.message}`);
    if (res.status === 401 && !path.endsWith("/auth/login")) onUnauthorized();
    throw new ApiError(res.status, err.code, err.message, err.detail || null);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Every page of a list route ({"items", "next_cursor"}).
export async function allPages(path, params = {}, max = 100000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(path + query({ ...params, cursor, limit: 10000 }));
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
