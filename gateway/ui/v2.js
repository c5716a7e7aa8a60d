// "Try it"'s rows as the same request over the Open Inference Protocol (/v2): as curl, and as tritonclient code.
// One input per column, as MLServer's PandasCodec sends a DataFrame (`content_type: "pd"`).

import { h } from "./dom.js";
import { PATHS, fill } from "./paths.js";

// Numbers travel as FP64 (integers too: a missing value is NaN), text and dates as BYTES, booleans as BOOL
// (as text when one is missing: a BOOL tensor has no missing values).
function datatype(column, values) {
  if (column.kind === "number" || column.kind === "integer") return "FP64";
  if (column.kind === "boolean") return values.some((v) => v === null) ? "BYTES" : "BOOL";
  return "BYTES";
}

/** The V2 infer request of `rows` (one array of JSON values per row, in `schema`'s order). */
export function v2Request(schema, rows, outputs) {
  return {
    parameters: { content_type: "pd" },
    inputs: schema.map((column, j) => {
      const values = rows.map((row) => row[j]);
      const type = datatype(column, values);
      return { name: column.name, shape: [rows.length], datatype: type, data: type === "BYTES" ? values.map((v) => (v === null ? null : String(v))) : values };
    }),
    outputs: outputs.map((name) => ({ name })),
  };
}

/** The infer path of a model key and the chosen target ("", "alias:NAME" or "version:N"). */
export function v2Path(key, target) {
  const [kind, value] = target.split(":");
  if (kind === "alias" || kind === "version") return fill(PATHS.V2_VERSION_INFER, { model: key, version: value });
  return fill(PATHS.V2_INFER, { model: key });
}

const shell = (s) => `'${s.replace(/'/g, "'\\''")}'`;

function python(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  return JSON.stringify(value); // numbers, and strings (JSON's escapes are Python's)
}

export function curlOf(origin, path, body) {
  return `curl -s ${shell(origin + path)} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shell(JSON.stringify(body))}`;
}

export function tritonOf(host, key, target, body) {
  const version = target.includes(":") ? target.split(":")[1] : "";
  const columns = body.inputs.map((i) => `    (${python(i.name)}, ${python(i.datatype)}, [${i.data.map(python).join(", ")}]),`);
  return [
    "import numpy as np",
    "import tritonclient.http as triton",
    "",
    `client = triton.InferenceServerClient(url=${python(host)})`,
    "columns = [  # (name, datatype, values): one input per column",
    ...columns,
    "]",
    "inputs = []",
    "for name, datatype, values in columns:",
    "    tensor = triton.InferInput(name, [len(values)], datatype)",
    "    if datatype == \"BYTES\":  # a missing text is the empty string",
    "        array = np.array([(\"\" if v is None else v).encode() for v in values], dtype=object)",
    "    else:",
    "        array = np.array([np.nan if v is None else v for v in values], dtype=np.float64 if datatype == \"FP64\" else np.bool_)",
    "    tensor.set_data_from_numpy(array)",
    "    inputs.append(tensor)",
    `outputs = [triton.InferRequestedOutput(name) for name in [${body.outputs.map((o) => python(o.name)).join(", ")}]]`,
    `result = client.infer(${python(key)}, inputs, outputs=outputs, model_version=${python(version)}, parameters={"content_type": "pd"})`,
    ...body.outputs.map((o) => `print(result.as_numpy(${python(o.name)}))`),
  ].join("\n");
}

/** A closed disclosure with both, for the rows just predicted. */
export function asV2(key, target, schema, rows, outputs) {
  const body = v2Request(schema, rows, outputs);
  return h("details", { class: "panel", id: "try-v2" },
    h("summary", {}, "The same request over the Open Inference Protocol (V2)"),
    h("p", { class: "muted" }, "As curl, JSON both ways:"),
    h("pre", { id: "try-curl" }, curlOf(window.location.origin, v2Path(key, target), body)),
    h("p", { class: "muted" }, "As Python with Triton's client (binary tensors both ways):"),
    h("pre", { id: "try-triton" }, tritonOf(window.location.host, key, target, body)));
}
