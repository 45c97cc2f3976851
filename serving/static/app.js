// The page's writes (upload, delete, correct) go to the JSON API with the key kept in this browser.
const KEY = "fazhi-api-key";

function show(text, error = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = false;
}

async function api(method, url, body) {
  const headers = { "X-API-Key": localStorage.getItem(KEY) || "" };
  if (body && !(body instanceof FormData)) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(url, { method, headers, body });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(response.status === 401 ? "需要 API 密钥（页面右上角）" : message);
  }
  return response.status === 204 ? null : response.json();
}

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = document.getElementById("api-key");
  keyInput.value = localStorage.getItem(KEY) || "";
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, keyInput.value);
    show("密钥已保存在本浏览器。");
  });

  const upload = document.getElementById("upload-form");
  if (upload) {
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData(upload);
      for (const [k, v] of [...form.entries()]) if (v === "") form.delete(k);
      const button = upload.querySelector("button");
      button.disabled = true;
      show("正在解析、标注和生成摘要……");
      try {
        const report = await api("POST", "/v1/reports", form);
        window.location.href = `/reports/${report.id}`;
      } catch (error) {
        show(`上传失败：${error.message}`, true);
      } finally {
        button.disabled = false;
      }
    });
  }

  for (const button of document.querySelectorAll("button.delete")) {
    button.addEventListener("click", async () => {
      if (!confirm("删除这份报告及其段落？")) return;
      try {
        await api("DELETE", `/v1/reports/${button.dataset.id}`);
        button.closest("tr").remove();
        show("已删除。");
      } catch (error) {
        show(`删除失败：${error.message}`, true);
      }
    });
  }

  for (const form of document.querySelectorAll("form.correct")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const para = form.closest(".para");
      // only what the reviewer changed: an untouched field is never recorded as a correction
      const body = {};
      if (form.category.value !== para.dataset.category) body.category = form.category.value;
      if (form.shortcoming.checked !== (para.dataset.shortcoming === "true")) body.shortcoming = form.shortcoming.checked;
      if (Object.keys(body).length === 0) { show("没有改动。"); return; }
      try {
        await api("PUT", `/v1/paragraphs/${encodeURIComponent(para.dataset.key)}/label`, body);
        window.location.reload();
      } catch (error) {
        show(`更正失败：${error.message}`, true);
      }
    });
  }
});
