// Sign-in. Two modes, from /workspace/config.json (shared/api/workspace.py):
// - entra: MSAL for the browser (authorization code with PKCE), scope `<API App ID URI>/.default`; the
//   token carries the user's app roles, and the management API checks the admin role as for any caller.
// - local (AUTH_MODE=local only): a dev admin token, from the link `make run` prints (`#token=…`, a URL
//   fragment, which browsers never send to a server) or pasted into the sign-in form. It lives in
//   sessionStorage and is removed from the address bar at once. In entra mode such fragments are ignored.

import { loadScript } from "./dom.js";

const TOKEN_KEY = "workspace.devToken";
let config = null;
let msalApp = null;
let account = null;

export function takeTokenFragment(cfg) {
  const hash = window.location.hash || "";
  const match = /^#(?:.*&)?token=([^&]+)/.exec(hash);
  if (!match) return;
  // Out of the address bar (and the history entry) first, whatever the mode.
  window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search);
  if (cfg.localTokenFragment) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  }
}

export async function initAuth(cfg) {
  config = cfg;
  takeTokenFragment(cfg);
  if (cfg.authMode === "local") return;
  if (cfg.authMode !== "entra" || (cfg.problems && cfg.problems.length)) return;
  await loadScript("/workspace/vendor/msal-browser.min.js");
  const { PublicClientApplication } = window.msal;
  msalApp = new PublicClientApplication({
    auth: {
      clientId: cfg.entra.clientId,
      authority: cfg.entra.authority,
      redirectUri: window.location.origin + cfg.entra.redirectPath,
      postLogoutRedirectUri: window.location.origin + "/workspace/",
    },
    cache: { cacheLocation: "sessionStorage" },
  });
  await msalApp.initialize();
  const result = await msalApp.handleRedirectPromise();
  account = (result && result.account) || msalApp.getAllAccounts()[0] || null;
  if (account) msalApp.setActiveAccount(account);
}

export function isSignedIn() {
  if (!config) return false;
  if (config.authMode === "local") return Boolean(sessionStorage.getItem(TOKEN_KEY));
  return Boolean(account);
}

export function userName() {
  if (config && config.authMode === "entra") return account ? account.username || account.name : "";
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return "";
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return `dev token, app ${claims.azp || claims.appid || "?"}`;
  } catch {
    return "dev token";
  }
}

export function setLocalToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

export async function getToken() {
  if (!config) throw new Error("not initialized");
  if (config.authMode === "local") return sessionStorage.getItem(TOKEN_KEY);
  if (!msalApp || !account) return null;
  try {
    const result = await msalApp.acquireTokenSilent({ scopes: config.entra.scopes, account });
    return result.accessToken;
  } catch (error) {
    if (error instanceof window.msal.InteractionRequiredAuthError) {
      await msalApp.acquireTokenRedirect({ scopes: config.entra.scopes, redirectStartPage: window.location.href });
      return null;
    }
    throw error;
  }
}

export async function signIn() {
  if (config.authMode === "entra" && msalApp) {
    await msalApp.loginRedirect({ scopes: config.entra.scopes, redirectStartPage: window.location.href });
  }
}

export async function signOut() {
  if (config.authMode === "local") {
    sessionStorage.removeItem(TOKEN_KEY);
    window.location.assign("/workspace/");
  } else if (msalApp) {
    await msalApp.logoutRedirect({ account });
  }
}

// After a 401: the stored token is expired or invalid.
export function forgetLocalToken() {
  if (config && config.authMode === "local") sessionStorage.removeItem(TOKEN_KEY);
}
