// Shown until the user is signed in.
import { setLocalToken, signIn } from "../auth.js";
import { clear, errorBox, field, h } from "../dom.js";

export async function signInPage(ctx) {
  const { main, config } = ctx;
  ctx.setTitle("Sign in");
  const problems = (config.problems || []).map((p) => errorBox({ message: p, code: "Misconfigured" }));
  const refused = config.lastAuthError
    ? h("div", { class: "error-box", role: "alert" }, h("p", { text: `The API refused the token: ${config.lastAuthError}` }))
    : null;
  if (config.authMode === "entra") {
    clear(
      main,
      h("h1", { text: "Sign in" }),
      refused,
      ...problems,
      h("p", { text: "Sign in with your organization's account. You need the administrator role of the integrations API." }),
      problems.length ? null : h("button", { type: "button", onclick: () => signIn(), text: "Sign in with Microsoft" }),
    );
    ctx.ready("Sign in");
    return;
  }
  const input = h("textarea", { rows: 4, spellcheck: "false", autocomplete: "off", name: "token", required: true });
  const form = h(
    "form",
    {
      class: "form",
      novalidate: true,
      onsubmit(event) {
        event.preventDefault();
        const token = input.value.trim();
        const error = form.querySelector(".field-error");
        if (token.split(".").length !== 3) {
          error.textContent = "Paste a whole token: three parts separated by dots.";
          error.hidden = false;
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        config.lastAuthError = null;
        setLocalToken(token);
        ctx.navigate(window.location.pathname + window.location.search, { replace: true });
      },
    },
    field("Dev admin token", input, { hint: "From `python -m tools.devtoken --app-id <guid> --admin`." }),
    h("button", { type: "submit", text: "Sign in" }),
  );
  clear(
    main,
    h("h1", { text: "Sign in (local mode)" }),
    refused,
    ...problems,
    h("p", {}, "This app runs with ", h("code", { text: "AUTH_MODE=local" }), ". Open the workspace link that ",
      h("code", { text: "make run" }), " prints (it signs you in), or paste a dev admin token:"),
    form,
  );
  ctx.ready("Sign in");
}
