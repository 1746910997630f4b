// Runs inside the explanation webview: replaces the content as the explanation streams in.
(function () {
  const content = document.getElementById("fimble-explanation");
  const state = document.getElementById("fimble-state");
  const title = document.getElementById("fimble-title");
  window.addEventListener("message", (event) => {
    const msg = event.data;
    if (!msg || msg.type !== "render") {
      return;
    }
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
    content.innerHTML = msg.html;
    content.dataset.token = msg.token;
    state.textContent = msg.state;
    title.textContent = msg.title;
    if (atBottom && msg.state !== "done") {
      window.scrollTo(0, document.body.scrollHeight);
    }
  });
  acquireVsCodeApi().postMessage({ type: "ready" });
})();
