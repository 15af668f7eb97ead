#!/usr/bin/env bash
# Runs a sharded campaign on the Kubernetes cluster kubectl points at, and
# prints the merged summary: applies campaign-job.yaml, waits for every
# index to complete, then runs merge-job.yaml and shows its log. The image
# (deploy/Dockerfile) must be where the cluster can pull it: pass it as
# IMAGE=registry/paxsim:tag. Exit status: the merge's (0 pass, 1 a seed failed).
set -euo pipefail
cd "$(dirname "$0")"
image=${IMAGE:-paxsim:latest}
timeout=${TIMEOUT:-24h}

sed "s|image: paxsim:latest|image: $image|" campaign-job.yaml | kubectl apply -f -
kubectl wait --for=condition=complete job/paxsim-campaign --timeout="$timeout"
kubectl delete job paxsim-merge --ignore-not-found
sed "s|image: paxsim:latest|image: $image|" merge-job.yaml | kubectl apply -f -
# The merge's pod ends either way (complete or failed): wait for one.
until [ -n "$(kubectl get job paxsim-merge -o jsonpath='{.status.succeeded}{.status.failed}')" ]; do
    sleep 5
done
kubectl logs job/paxsim-merge
exit "$(kubectl get pod -l job-name=paxsim-merge -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')"
