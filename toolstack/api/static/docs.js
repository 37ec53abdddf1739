// /docs: Swagger UI (served from static/vendor/swagger-ui, see SOURCE.md there) over /openapi.json.
//
// The spec needs the token, as every API route does. The token is the one the main page keeps for this tab
// in sessionStorage (or #token=... in this page's address, removed at once); without one, nothing of the
// API is shown. "Try it out" requests carry it too, as `Authorization: Bearer`.
"use strict";

(async () => {
  const key = "toolstack-token";
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(key, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem(key);
  if (!token) {
    document.getElementById("docs-login").hidden = false;
    return;
  }
  const headers = { Authorization: `Bearer ${token}` };
  const response = await fetch("/openapi.json", { headers });
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) sessionStorage.removeItem(key);
    const error = document.getElementById("docs-error");
    error.textContent = `The spec could not be read (HTTP ${response.status}): connect again on the main page.`;
    error.hidden = false;
    document.getElementById("docs-login").hidden = false;
    return;
  }
  window.ui = SwaggerUIBundle({
    spec: await response.json(),
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Same origin only: the page's Content-Security-Policy allows no other, and the token goes nowhere else.
    requestInterceptor: (request) => {
      if (new URL(request.url, location.href).origin === location.origin) request.headers.Authorization = headers.Authorization;
      return request;
    },
    validatorUrl: null, // the default validator is a third-party service
    // Shown as authorized (closed locks): the interceptor above already sends the token.
    onComplete: () => window.ui.preauthorizeApiKey("HTTPBearer", token),
  });
})();
