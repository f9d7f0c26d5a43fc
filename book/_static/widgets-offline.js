// Loaded between the vendored require.js and the widget manager (see _config.yml, nb_ipywidgets_js).
(function () {
  // 1. The manager finds its fonts beside the URL require.js gives its module id; by default that is
  //    a path next to the page. Point the id at _static/vendor/html-manager/ so the fonts load offline.
  var here = document.currentScript.src.split("?")[0];            // .../_static/widgets-offline.js
  var base = here.slice(0, here.lastIndexOf("/") + 1) + "vendor/html-manager";
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });

  // 2. The manager typesets widget labels with MathJax 2's `MathJax.Hub.Queue`; the book loads
  //    MathJax 3, which has no Hub ("Cannot read properties of undefined (reading 'Queue')").
  //    Whenever a MathJax object is installed, give it a Hub.Queue that typesets with MathJax 3.
  var current = window.MathJax;
  function withHub(mj) {
    if (mj && typeof mj === "object" && mj.version && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var el = job && job[2];
          var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
          ready.then(function () { return mj.typesetPromise ? mj.typesetPromise(el ? [el] : undefined) : null; })
               .catch(function (err) { console.error(err); });
        }
      };
    }
    return mj;
  }
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); }
  });
  withHub(current);
})();
