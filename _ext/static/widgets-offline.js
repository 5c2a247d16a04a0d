// Loaded before require.js and the ipywidgets embedder on pages with widgets (_config.yml,
// nb_ipywidgets_js), so that the widgets render from the book's own copies, offline.

// require.js reads a global `require` object as its configuration. The embedder finds its
// icon fonts beside its own module id: resolve module ids in the folder this script's
// data-vendor attribute names (relative to the site's root: _static/vendor/, where
// offline_assets put @jupyter-widgets/html-manager/dist/). Without the attribute (a build
// with ZEN_BOOK_CDN=1), require.js keeps its defaults.
(() => {
  const vendor = document.currentScript && document.currentScript.dataset.vendor;
  if (!vendor) return;
  const root = new URL(document.documentElement.dataset.content_root || "./", window.location.href);
  window.require = { baseUrl: new URL(vendor, root).href };
})();

// The embedder typesets math in widget labels through MathJax 2's API
// (MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])); the book loads MathJax 3. Once
// MathJax 3 has loaded (a deferred script), give it that one call.
document.addEventListener("DOMContentLoaded", () => {
  const mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub || !mathjax.typesetPromise) return;
  mathjax.Hub = {
    Queue: (...jobs) => {
      for (const job of jobs) {
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          mathjax.typesetPromise([job[2]]);
        }
      }
    },
  };
});
