// /docs: Swagger UI on the gateway's own OpenAPI document, served by the gateway (no internet needed).
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
});
