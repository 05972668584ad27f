// The MSAL redirect URI (config.json entra.redirectPath): msal-browser v5 expects the page Entra ID redirects
// to with the authorization code to hand it to the app; for the redirect flow it stores the response in
// sessionStorage and navigates back to the page that started the sign-in, whose handleRedirectPromise()
// redeems the code (with the PKCE verifier) for tokens.
"use strict";
window.msalRedirectBridge.broadcastResponseToMainFrame().catch((error) => {
  const main = document.getElementById("main");
  main.textContent = "";
  const p = document.createElement("p");
  p.className = "error-box";
  p.setAttribute("role", "alert");
  p.textContent = `Sign-in did not complete: ${error && error.message ? error.message : error}. `;
  const a = document.createElement("a");
  a.href = "/workspace/";
  a.textContent = "Back to the workspace";
  p.append(a);
  main.append(p);
});
