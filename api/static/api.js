// The API as the pages use it: the {success, message, data} envelope unwrapped, with the demo's
// customer token kept in localStorage (so the shopper finds the order again after the gateway's
// page), or a token the caller holds (the operators' page passes the admin's).

const API = "/api/v1";
const TOKEN_KEY = "paywindow.demoToken";

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

let session = JSON.parse(localStorage.getItem(TOKEN_KEY) || "null");

function expired(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return claims.exp * 1000 < Date.now() + 60_000;
  } catch {
    return true;
  }
}

/** {token, sub} for this browser's demo shopper, minted once and kept until it expires. */
export async function demoSession({ renew = false } = {}) {
  if (session && !renew && !expired(session.token)) return session;
  const body = session ? { sub: session.sub } : {};
  const data = await request("POST", "/demo/token", body, { auth: false, base: "" });
  session = { token: data.token, sub: data.sub };
  localStorage.setItem(TOKEN_KEY, JSON.stringify(session));
  return session;
}

export async function request(method, path, body, { auth = true, token = null, base = API, headers = {}, retried = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  else if (auth) init.headers.Authorization = `Bearer ${(await demoSession()).token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(base + path, init);
  } catch {
    throw new ApiError("NETWORK", "network error", 0);
  }
  const envelope = await response.json().catch(() => null);
  if (response.status === 401 && auth && !token && !retried) {
    await demoSession({ renew: true }); // e.g. the API's secret changed since the token was minted
    return request(method, path, body, { auth, base, headers, retried: true });
  }
  if (!response.ok || !envelope?.success) {
    if (response.status === 404 && path === "/demo/token") throw new ApiError("NO_TOKEN", "", 404);
    throw new ApiError(envelope?.error || `HTTP_${response.status}`, envelope?.message || response.statusText, response.status);
  }
  return envelope.data;
}

/** A key that is the same for the same checkout, so a double click makes one order. */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return "demo-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
