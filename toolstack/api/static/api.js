// The API client: the token (kept in sessionStorage, this tab only) and JSON requests that carry it.

const KEY = "toolstack-token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }

  /** Whether the token was missing or wrong: the page has already gone back to the login form. */
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

const session = { token: null, onAuthFailure: () => {} };

/** Read the token from the URL fragment (#token=..., never sent to the server) into this tab's storage. */
export function takeTokenFromFragment() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

export function useToken(token) {
  session.token = token;
}

export function keepToken() {
  sessionStorage.setItem(KEY, session.token);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

export function token() {
  return session.token;
}

/** What to do when the server refuses the token (401 or 403): called with the status. */
export function onAuthFailure(handler) {
  session.onAuthFailure = handler;
}

export function authHeaders() {
  return { Authorization: `Bearer ${session.token}` };
}

/**
 * A request; resolves to `{data, response}`, or rejects with an ApiError carrying the error body. `extra`:
 * more headers (If-Match).
 */
export async function api(method, path, body, extra = {}) {
  const headers = { ...authHeaders(), ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401 || response.status === 403) {
    forgetToken();
    session.onAuthFailure(response.status);
    throw new ApiError(response.status, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, response };
}
