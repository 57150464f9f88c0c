// The API reference page (/api/docs/): Swagger UI over this server's OpenAPI document.
// A file of its own rather than an inline script, so the page keeps a strict CSP.
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Keys are pasted into "Authorize" for each visit and never stored in the browser.
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
