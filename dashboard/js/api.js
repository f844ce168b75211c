// Calls to the gateway with the session cookie; a 401 anywhere sends the user back to sign-in.

export class ApiError extends Error {
  constructor(status, code, message, detail = null) {
    super(message);
    this.status = status;
    this.code = code;
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
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body !== undefined ? { "Content-Type": "application/json", Accept: "application/json" } : { Accept: "application/json" },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: String(res.status), message: res.statusText };
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
