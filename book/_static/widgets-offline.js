// Loaded between the vendored require.js and the widget manager (see _config.yml, nb_ipywidgets_js).
// The manager finds its fonts beside the URL require.js gives its module id; by default that is a
// path next to the page. Point the id at _static/vendor/html-manager/ so the fonts load offline.
(function () {
  var here = document.currentScript.src.split("?")[0];            // .../_static/widgets-offline.js
  var base = here.slice(0, here.lastIndexOf("/") + 1) + "vendor/html-manager";
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
})();
