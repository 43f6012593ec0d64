// The API's documentation page (/api/docs): Swagger UI from our own static files, on our schema.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: document.getElementById("swagger-ui").dataset.schema,
    dom_id: "#swagger-ui",
    // no deep links: Swagger UI puts them as <a> inside each operation's <button> (nested-interactive)
    deepLinking: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
