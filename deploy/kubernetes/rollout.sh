#!/usr/bin/env bash
# Deploy an overlay: config and Secrets first, then the migration Job (waited for), then
# the services. Usage: deploy/kubernetes/rollout.sh deploy/kubernetes/overlays/production
# Needs kubectl (with its built-in kustomize) and KEDA's CRDs in the cluster.
set -euo pipefail
overlay=${1:?usage: rollout.sh OVERLAY_DIRECTORY}
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
kubectl kustomize "$overlay" >"$rendered"
namespace=$(awk '/^kind: Namespace$/ {ns=1} ns && /^  name:/ {print $2; exit}' "$rendered")
ns=(--namespace "${namespace:-default}")

# Namespace, ServiceAccount, ConfigMap, Secrets: everything without a component label.
kubectl apply -f "$rendered" -l '!app.kubernetes.io/component'
# A Job's pod template cannot change: replace the last run's Job with this release's.
kubectl delete job "${ns[@]}" crmsync-migrate --ignore-not-found --wait=true
kubectl apply -f "$rendered" -l app.kubernetes.io/component=migrate
kubectl wait "${ns[@]}" --for=condition=complete --timeout=600s job/crmsync-migrate
# The services (the Job is applied again unchanged).
kubectl apply -f "$rendered"
kubectl rollout status "${ns[@]}" deployment -l app.kubernetes.io/name=crmsync --timeout=600s
