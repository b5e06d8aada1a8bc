// Builds the dashboard into dist/: one JavaScript and one CSS file named by their
// content's hash (served as immutable), and index.html naming them. The output is
// deterministic, so CI rebuilds it and fails when the committed files differ.

import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/assets", { recursive: true });
const result = await build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: "dist/assets",
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith(".js"));
const css = outputs.find((f) => f.endsWith(".css"));
if (!js || !css) throw new Error(`unexpected outputs: ${outputs.join(", ")}`);
const html = readFileSync("index.html", "utf8").replace("{{js}}", js).replace("{{css}}", css);
writeFileSync("dist/index.html", html);
for (const f of [js, css]) {
  const size = readFileSync(`dist/assets/${f}`).length;
  console.log(`dist/assets/${f}  ${(size / 1024).toFixed(1)} KB`);
}
