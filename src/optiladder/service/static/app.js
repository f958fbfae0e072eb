/* optiladder pages: predict, map, material, API reference. Plain JS + the bundled Plotly; no network
   access beyond this server. Each page sets <body data-state="loading|plotted|error"> (used by tests). */
"use strict";

const OL = (() => {
  const LEVELS = {
    ipa: { name: "IPA", color: "#d97706", dash: "dash" },
    rpa: { name: "RPA", color: "#2457c5", dash: "solid" },
  };
  const OPTICS = {
    alpha_cm: ["absorption coefficient α", "α (cm⁻¹)"],
    n: ["refractive index n", "n"],
    k: ["extinction coefficient k", "k"],
    R: ["normal-incidence reflectivity R", "R"],
    loss: ["energy-loss function −Im(1/ε)", "−Im(1/ε)"],
  };
  const CONFIG = { responsive: true, displaylogo: false };

  const $ = (id) => document.getElementById(id);
  const setState = (s) => { document.body.dataset.state = s; };

  function showError(msg) {
    const el = $("error");
    el.textContent = msg;
    el.hidden = !msg;
    if (msg) setState("error");
  }

  function layout(title, ytitle, xmax = 20) {
    return {
      title: { text: title, font: { size: 14 } },
      margin: { l: 60, r: 15, t: 38, b: 45 },
      xaxis: { title: { text: "photon energy ħω (eV)" }, range: [0, xmax], zeroline: false },
      yaxis: { title: { text: ytitle }, zeroline: true },
      legend: { x: 0.99, xanchor: "right", y: 0.99, bgcolor: "rgba(255,255,255,0.7)" },
      hovermode: "x unified",
    };
  }

  function trace(x, y, level, extra = {}) {
    const st = LEVELS[level] || { name: level, color: "#555", dash: "solid" };
    return Object.assign({ x, y, type: "scatter", mode: "lines", name: st.name,
      line: { color: st.color, dash: st.dash, width: 2 } }, extra);
  }

  async function fetchJSON(url, opts) {
    const r = await fetch(url, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const d = body && body.detail;
      throw new Error(typeof d === "string" ? d : `HTTP ${r.status}`);
    }
    return body;
  }

  function verdictBox(el, sc, threshold, good, text) {
    el.hidden = false;
    el.className = "verdict " + (good ? "good" : "bad");
    el.textContent = text;
  }

  function showWarnings(el, warnings) {
    el.replaceChildren(...warnings.map((w) => {
      const li = document.createElement("li");
      li.textContent = `outside the training domain: ${w}`;
      return li;
    }));
    el.hidden = warnings.length === 0;
  }

  function showDomain() {
    fetchJSON("/models").then((m) => {
      const d = m.domain;
      if (!d) return;
      const sizes = Object.entries(d.cell_sizes || {})
        .map(([n, c]) => `${c} with ${n} atom${n === "1" ? "" : "s"}`).join(", ");
      const calibrated = d.calibrated_max_nsites
        ? ` Their uncertainty (expected SC, warnings) was calibrated on validation cells of up to ` +
          `${d.calibrated_max_nsites} atoms; cells with more than ${d.warn_above_nsites} atoms are marked uncertain.`
        : ` Cells with more than ${d.warn_above_nsites} atoms are marked uncertain.`;
      $("domain").textContent = `Training domain: ${d.n_train} crystals of at most ${d.max_nsites} atoms per cell ` +
        `(${sizes}), containing ${d.elements.length} elements (${d.elements.join(" ")}); ` +
        `${d.volume_per_atom_A3[0].toFixed(1)}–${d.volume_per_atom_A3[1].toFixed(1)} Å³ per atom.` + calibrated +
        ` Cells of up to ${d.max_atoms_accepted} atoms are accepted, but metals, odd electron counts, unseen ` +
        "elements and vacuum also mark the verdict uncertain.";
    }).catch(() => {});
  }

  // ---------------------------------------------------------------- predict page
  function plotPrediction(res) {
    const levels = Object.keys(res.spectra);
    const im = levels.map((lv) => trace(res.spectra[lv].omega_eV, res.spectra[lv].eps_im, lv));
    const re = levels.map((lv) => trace(res.spectra[lv].omega_eV, res.spectra[lv].eps_re, lv,
      { name: `${LEVELS[lv].name} (ε∞ = ${res.spectra[lv].eps_inf.toFixed(2)})` }));
    Plotly.newPlot("plot-im", im, layout("Im ε (trace/3), predicted", "Im ε"), CONFIG);
    Plotly.newPlot("plot-re", re, layout("Re ε by Kramers–Kronig", "Re ε"), CONFIG);
    const drawOptics = () => {
      const key = $("optic-select").value;
      const tr = levels.map((lv) => trace(res.spectra[lv].omega_eV, res.spectra[lv][key], lv));
      const lay = layout(OPTICS[key][0], OPTICS[key][1]);
      if (key === "alpha_cm") lay.yaxis.exponentformat = "power";
      Plotly.newPlot("plot-optics", tr, lay, CONFIG);
    };
    $("optic-select").onchange = drawOptics;
    drawOptics();
  }

  function initPredict() {
    const form = $("predict-form");
    showDomain();
    let last = null;
    $("download").onclick = () => {
      if (!last) return;
      const blob = new Blob([JSON.stringify(last)], { type: "application/json" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `${(last.formula || "prediction")}.json`;
      a.click();
    };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError("");
      const fd = new FormData();
      const file = $("file").files[0];
      const text = $("text").value;
      if (file) fd.append("file", file);
      else if (text.trim()) {
        fd.append("text", text);
        if ($("filename").value.trim()) fd.append("filename", $("filename").value.trim());
      } else { showError("input: choose a file or paste a structure"); return; }
      $("submit").disabled = true;
      $("status").textContent = "predicting…";
      setState("loading");
      const t0 = performance.now();
      try {
        const res = await fetchJSON("/predict?stride=2", { method: "POST", body: fd });
        last = res;
        $("result").hidden = false;
        $("title").textContent = `${res.formula} · ${res.nsites} atoms · ${res.name}`;
        verdictBox($("verdict"), res.sc_rpa_ipa, res.threshold, res.ipa_good_enough, res.verdict);
        showWarnings($("warnings"), res.warnings || []);
        $("models").textContent = "models: " + Object.values(res.models || {}).join(", ");
        plotPrediction(res);
        $("status").textContent = `done in ${Math.round(performance.now() - t0)} ms`;
        setState("plotted");
      } catch (e) {
        $("status").textContent = "";
        showError(e.message);
      } finally {
        $("submit").disabled = false;
      }
    });
  }

  // ---------------------------------------------------------------- map page
  function initMap() {
    setState("loading");
    fetchJSON("/map").then((m) => {
      $("map-info").textContent = ` · ${m.n} materials · model ${m.model.full_name || m.model.name}` +
        ` · UMAP n_neighbors=${m.umap.n_neighbors}, min_dist=${m.umap.min_dist}, seed ${m.umap.seed}` +
        ` · built ${m.created}`;
      const draw = () => {
        const key = $("colour-select").value;
        const text = m.ids.map((id, i) =>
          `${m.formulas[i]} · ${id}<br>${m.nsites[i]} atoms · split ${m.splits[i]}` +
          `<br>SC[RPA;IPA] DFT ${m.sc_dft[i].toFixed(3)} · predicted ${m.sc_pred[i].toFixed(3)}`);
        const tr = {
          x: m.x, y: m.y, customdata: m.ids, text, hoverinfo: "text", type: "scatter", mode: "markers",
          marker: { size: 9, color: m[key], colorscale: "Viridis", cmin: 0.3, cmax: 1.0,
            line: { width: 0.5, color: "#333" },
            colorbar: { title: { text: "SC[RPA;IPA]" } } },
        };
        const lay = { margin: { l: 40, r: 10, t: 10, b: 40 }, hovermode: "closest",
          xaxis: { title: { text: "UMAP 1" }, zeroline: false }, yaxis: { title: { text: "UMAP 2" }, zeroline: false } };
        Plotly.newPlot("map", [tr], lay, CONFIG).then((gd) => {
          gd.on("plotly_click", (ev) => {
            const id = ev.points[0].customdata;
            window.location.href = `/ui/materials/${encodeURIComponent(id)}`;
          });
          setState("plotted");
        });
      };
      $("colour-select").onchange = draw;
      draw();
    }).catch((e) => showError(e.message));
  }

  // ---------------------------------------------------------------- material page
  function initMaterial() {
    setState("loading");
    const id = decodeURIComponent(window.location.pathname.split("/").pop());
    fetchJSON(`/materials/${encodeURIComponent(id)}?predict=true`).then((m) => {
      document.title = `optiladder · ${m.formula} ${m.mat_id}`;
      $("title").textContent = `${m.formula} · ${m.mat_id}`;
      const facts = [
        ["atoms per cell", m.nsites], ["space group", m.spacegroup], ["split", m.split],
        ["band gap (PBE, indirect / direct)", `${(m.gap_indirect_eV ?? NaN).toFixed(2)} / ${(m.gap_direct_eV ?? NaN).toFixed(2)} eV`],
        ["protocol", m.protocol], ["SC[RPA; IPA] (DFT)", m.sc_rpa_ipa.toFixed(3)],
        ["ε∞ IPA / RPA (DFT)", `${m.spectra.ipa.eps_inf.toFixed(2)} / ${m.spectra.rpa.eps_inf.toFixed(2)}`],
      ];
      const p = m.prediction;
      if (p && p.ok) {
        facts.push(["SC[RPA; IPA] predicted", p.sc_rpa_ipa === null ? "–" : p.sc_rpa_ipa.toFixed(3)]);
        for (const [lv, v] of Object.entries(p.sc_vs_dft || {})) facts.push([`SC[${lv.toUpperCase()} ML; DFT]`, v.toFixed(3)]);
      }
      $("facts").innerHTML = "";
      for (const [k, v] of facts) {
        const tr = document.createElement("tr");
        tr.innerHTML = "<td></td><td></td>";
        tr.children[0].textContent = k;
        tr.children[1].textContent = v;
        $("facts").appendChild(tr);
      }
      if (p && p.ok && p.sc_rpa_ipa !== null) verdictBox($("verdict"), p.sc_rpa_ipa, p.threshold, p.ipa_good_enough, p.verdict);
      if (p && p.ok) showWarnings($("warnings"), p.warnings || []);
      $("result").hidden = false;
      const xmax = 20;
      const im = ["ipa", "rpa"].map((lv) => trace(m.spectra[lv].omega_eV, m.spectra[lv].eps_im, lv, { name: `${LEVELS[lv].name} DFT` }));
      const re = ["ipa", "rpa"].map((lv) => trace(m.spectra[lv].omega_eV, m.spectra[lv].eps_re, lv, { name: `${LEVELS[lv].name} DFT` }));
      if (p && p.ok) {
        for (const lv of Object.keys(p.spectra)) {
          const s = p.spectra[lv];
          im.push(trace(s.omega_eV, s.eps_im, lv, { name: `${LEVELS[lv].name} ML`, line: { color: LEVELS[lv].color, dash: "dot", width: 1.5 }, opacity: 0.8 }));
          re.push(trace(s.omega_eV, s.eps_re, lv, { name: `${LEVELS[lv].name} ML`, line: { color: LEVELS[lv].color, dash: "dot", width: 1.5 }, opacity: 0.8 }));
        }
      }
      Plotly.newPlot("plot-im", im, layout("Im ε (trace/3)", "Im ε", xmax), CONFIG);
      Plotly.newPlot("plot-re", re, layout("Re ε (trace/3)", "Re ε", xmax), CONFIG);
      const drawOptics = () => {
        const key = $("optic-select").value;
        const tr = ["ipa", "rpa"].map((lv) => trace(m.spectra[lv].omega_eV, m.spectra[lv][key], lv, { name: `${LEVELS[lv].name} DFT` }));
        const lay = layout(OPTICS[key][0], OPTICS[key][1], xmax);
        if (key === "alpha_cm") lay.yaxis.exponentformat = "power";
        Plotly.newPlot("plot-optics", tr, lay, CONFIG);
      };
      $("optic-select").onchange = drawOptics;
      drawOptics();
      setState("plotted");
    }).catch((e) => showError(e.message));
  }

  // ---------------------------------------------------------------- API reference
  function initDocs() {
    fetchJSON("/openapi.json").then((spec) => {
      const root = $("endpoints");
      for (const [path, ops] of Object.entries(spec.paths)) {
        for (const [method, op] of Object.entries(ops)) {
          const div = document.createElement("div");
          div.className = "endpoint card";
          const h = document.createElement("h3");
          h.innerHTML = `<span class="method ${method}"></span><code></code>`;
          h.children[0].textContent = method.toUpperCase();
          h.children[1].textContent = path;
          div.appendChild(h);
          const d = document.createElement("pre");
          d.style.whiteSpace = "pre-wrap";
          d.textContent = (op.description || op.summary || "").trim();
          div.appendChild(d);
          const params = (op.parameters || []).map((p) => `${p.name} (${p.in})${p.required ? ", required" : ""}: ${(p.description || "")}`);
          const body = op.requestBody && op.requestBody.content;
          if (body) {
            for (const [ctype, c] of Object.entries(body)) {
              const ref = c.schema && c.schema.$ref ? c.schema.$ref.split("/").pop() : null;
              const schema = ref ? (spec.components.schemas[ref] || {}) : (c.schema || {});
              for (const [field, f] of Object.entries(schema.properties || {})) {
                params.push(`${field} (${ctype} field): ${f.description || ""}`);
              }
              if (!schema.properties) params.push(`body: ${ctype}`);
            }
          }
          if (params.length) {
            const ul = document.createElement("ul");
            for (const t of params) { const li = document.createElement("li"); li.textContent = t; ul.appendChild(li); }
            div.appendChild(ul);
          }
          root.appendChild(div);
        }
      }
      setState("plotted");
    }).catch((e) => showError(e.message));
  }

  return { initPredict, initMap, initMaterial, initDocs };
})();

// no inline scripts (the Content-Security-Policy forbids them): each page names itself in <body data-page>
document.addEventListener("DOMContentLoaded", () => {
  const init = { predict: OL.initPredict, map: OL.initMap, material: OL.initMaterial, docs: OL.initDocs };
  (init[document.body.dataset.page] || (() => {}))();
});
