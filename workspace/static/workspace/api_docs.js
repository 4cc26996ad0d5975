// The API reference: the vendored Swagger UI drawing the OpenAPI schema the page names
// (data-schema-url): /api/schema/ on the platform's /api/docs/, the schema file beside the
// documentation site's api-reference page (docs/hooks.py copies this file there).
const root = document.getElementById("swagger-ui");
window.SwaggerUIBundle({
  url: root.dataset.schemaUrl,
  domNode: root,
  deepLinking: true,
  docExpansion: "none",
  defaultModelsExpandDepth: 0,
});
