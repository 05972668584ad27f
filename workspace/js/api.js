// The management API (docs/openapi.yaml), same origin, with the signed-in user's bearer token.
import { forgetLocalToken, getToken } from "./auth.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Set by app.js: called on a 401, to show the sign-in page.
export const hooks = { onUnauthorized: null };

export async function request(method, path, { json, body, contentType, accept } = {}) {
  const headers = {};
  const token = await getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, "NetworkError", `the app could not be reached (${error.message})`);
  }
  if (response.ok) return response;
  let code = `HTTP${response.status}`;
  let message = `the app answered ${response.status} ${response.statusText || ""}`.trim();
  try {
    const envelope = await response.json();
    if (envelope && envelope.error) {
      code = envelope.error.code || code;
      message = envelope.error.message || message;
    }
  } catch {
    // The host's own 404 and 500 have empty bodies (HOST.md).
  }
  if (response.status === 401) {
    forgetLocalToken();
    if (hooks.onUnauthorized) hooks.onUnauthorized(message);
  }
  throw new ApiError(response.status, code, message);
}

export async function getJson(path) {
  return (await request("GET", path)).json();
}

export async function sendJson(method, path, json) {
  const response = await request(method, path, { json });
  return response.status === 204 ? null : response.json();
}

// The continuation of a nextLink (an absolute URL whose host may be the public one): only its query matters.
export function continuationOf(nextLink) {
  if (!nextLink) return null;
  try {
    return new URL(nextLink, window.location.origin).searchParams.get("continuation");
  } catch {
    return null;
  }
}

export function q(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const enc = encodeURIComponent;
