// Validates rendered Kubernetes manifests (a JSON array of objects on stdin) against the OpenAPI
// schemas of their kinds, offline, with kubernetes-models (core kinds) and
// @kubernetes-models/prometheus-operator (ServiceMonitor). Usage:
//   node validate_k8s.mjs build/deploy-tools/node_modules < manifests.json
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const modules = resolve(process.argv[2]);
const packages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkg = packages[group] ?? "kubernetes-models";
  const path = pkg === "kubernetes-models" && group === "" ? `${pkg}/${version}/${kind}`
                                                          : `${pkg}/${group}/${version}/${kind}`;
  const module = await import(pathToFileURL(`${modules}/${path}.js`).href);
  return module[kind];
}

const objects = JSON.parse(readFileSync(0, "utf8"));
let failures = 0;
for (const object of objects) {
  const name = `${object.kind}/${object.metadata?.name}`;
  try {
    const Model = await modelFor(object.apiVersion, object.kind);
    new Model(object).validate();
    console.log(`valid   ${object.apiVersion} ${name}`);
  } catch (error) {
    failures++;
    console.log(`INVALID ${object.apiVersion} ${name}: ${error.message}`);
  }
}
process.exit(failures ? 1 : 0);
