#!/usr/bin/env bash
# The MNIST batch endpoint example, end to end: the sequence of azureml-examples'
# cli/endpoints/batch/deploy-models/mnist-classifier/deploy-and-run.sh with `pbe` where
# it has `az ml`. It trains its two models here (torch and Keras, on CPU, in seconds),
# writes real handwritten digits as PNG files, deploys both models behind one endpoint,
# scores the digits with each, switches the default, and prints where the predictions are,
# their first rows, each deployment's accuracy against the labels, and the job names to
# look up in the Prefect UI.
#
# Settings (environment): MNIST_DIR (a folder of IDX files; default: the test set bundled in
# examples/mnist/data), MNIST_SOURCE (folder, the default; download: MNIST via torchvision,
# online only; sklearn: scikit-learn's small digits, not real MNIST), COUNT (digits to score,
# default 1000, 300 for sklearn) and START (first digit, default "heldout": the first one
# train.py did not train on), WORK (scratch folder), PBE_HOME (the pbe workspace, default
# ~/.pbe).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
MNIST_SOURCE="${MNIST_SOURCE:-folder}"
if [[ "$MNIST_SOURCE" == sklearn ]]; then COUNT="${COUNT:-300}"; else COUNT="${COUNT:-1000}"; fi
START="${START:-heldout}"
WORK="${WORK:-$HERE/.work}"
DATA_ARGS=(--source "$MNIST_SOURCE")
if [[ -n "${MNIST_DIR:-}" ]]; then DATA_ARGS+=(--mnist-dir "$MNIST_DIR"); fi
if ! command -v pbe >/dev/null 2>&1; then
  pbe() { "$PYTHON" -m deployments.cli "$@"; }
fi

# Each step says what it does and, when the next one starts, how long it took.
RUN_STARTED=$EPOCHREALTIME
STEP_NAME=""
STEP_STARTED=$EPOCHREALTIME
TIMINGS=()
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
end_step() {
  [[ -n "$STEP_NAME" ]] || return 0
  local took
  took=$(seconds_since "$STEP_STARTED")
  echo "--- done in $took s"
  TIMINGS+=("$(printf '%7s s  %s' "$took" "$STEP_NAME")")
  STEP_NAME=""
}
step() {
  end_step
  STEP_NAME="$*"
  STEP_STARTED=$EPOCHREALTIME
  echo
  echo "=== $*"
}
trap 'echo "run.sh: \"$STEP_NAME\" failed after $(seconds_since "$STEP_STARTED") s" >&2' ERR
wait_for() {  # <job>: follow the job's logs; stop the example if it did not complete
  echo "waiting for job $1 (follow it: pbe job stream -n $1)"
  pbe job stream -n "$1" >/dev/null
  local status
  status=$(pbe job show -n "$1" --query status -o tsv)
  echo "job $1: $status"
  [[ "$status" == "Completed" ]] || { echo "job $1 ended $status" >&2; exit 1; }
}
output_of() { pbe job show -n "$1" --query outputs.score.path -o tsv; }

step "Training the torch and Keras models on CPU"
mkdir -p "$WORK"
"$PYTHON" "$HERE/train.py" "${DATA_ARGS[@]}" --out "$WORK/models" --framework both

step "Writing $COUNT held-out digits as PNG files (the job's input folder)"
rm -rf "$WORK/digits" "$WORK/digits_labels.csv"
"$PYTHON" "$HERE/data.py" "${DATA_ARGS[@]}" --out "$WORK/digits" --count "$COUNT" \
  --start "$START" --labels-csv "$WORK/digits_labels.csv"
INPUT="$WORK/digits"

ENDPOINT_SUFIX=$(tr -dc 'a-z0-9' </dev/urandom | head -c 5 || true)
ENDPOINT_NAME="mnist-batch-$ENDPOINT_SUFIX"

step "Registering the torch model"
pbe model create --name mnist-classifier-torch --type custom_model \
  --path "$WORK/models/torch/model" --query "{name:name, version:version}" -o tsv

step "Creating compute"
pbe compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 5 \
  --query name -o tsv

step "Creating batch endpoint $ENDPOINT_NAME"
pbe batch-endpoint create --file "$HERE/endpoint.yml" --name "$ENDPOINT_NAME" --query name -o tsv

step "Creating batch deployment mnist-torch-dpl (the default)"
pbe batch-deployment create --file "$HERE/deployment-torch/deployment.yml" \
  --endpoint-name "$ENDPOINT_NAME" --set-default --query name -o tsv

step "Invoking the endpoint"
TORCH_JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" --input "$INPUT" \
  --input-type uri_folder --query name -o tsv)
pbe job show -n "$TORCH_JOB" --web --query "{name:name, status:status}" -o tsv
wait_for "$TORCH_JOB"

step "Invoking with an output path and file name"
OUTPUT_PATH="$WORK/outputs/$ENDPOINT_NAME"
rm -rf "$OUTPUT_PATH"
JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" --input "$INPUT" \
  --output-path "$OUTPUT_PATH" --set output_file_name=predictions.csv --query name -o tsv)
wait_for "$JOB"

step "Invoking with --mini-batch-size 20 --instance-count 5"
JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" --input "$INPUT" \
  --mini-batch-size 20 --instance-count 5 --query name -o tsv)
wait_for "$JOB"
pbe batch-deployment list-jobs --name mnist-torch-dpl --endpoint-name "$ENDPOINT_NAME" \
  --query "[].name" -o tsv

step "Registering the Keras model and adding its deployment (not the default)"
pbe model create --name mnist-classifier-keras --type custom_model \
  --path "$WORK/models/keras/model" --query "{name:name, version:version}" -o tsv
pbe batch-deployment create --file "$HERE/deployment-keras/deployment.yml" \
  --endpoint-name "$ENDPOINT_NAME" --query name -o tsv

step "Invoking the Keras deployment by name"
KERAS_JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" \
  --deployment-name mnist-keras-dpl --input "$INPUT" --query name -o tsv)
wait_for "$KERAS_JOB"

step "Making the Keras deployment the default, and invoking the endpoint"
pbe batch-endpoint update --name "$ENDPOINT_NAME" --set defaults.deployment_name=mnist-keras-dpl \
  --query defaults -o json
DEFAULT_JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" --input "$INPUT" --query name -o tsv)
wait_for "$DEFAULT_JOB"
[[ $(pbe job show -n "$DEFAULT_JOB" --query deployment_name -o tsv) == mnist-keras-dpl ]]

TORCH_OUT=$(output_of "$TORCH_JOB")
KERAS_OUT=$(output_of "$KERAS_JOB")
DEFAULT_OUT=$(output_of "$DEFAULT_JOB")

step "Deleting the torch deployment and the endpoint (job outputs are kept)"
pbe batch-deployment delete --name mnist-torch-dpl --endpoint-name "$ENDPOINT_NAME" --yes
pbe batch-endpoint delete --name "$ENDPOINT_NAME" --yes

end_step
"$PYTHON" "$HERE/report.py" --labels "$WORK/digits_labels.csv" \
  "mnist-torch-dpl=$TORCH_OUT/predictions.csv@$TORCH_JOB" \
  "mnist-keras-dpl=$KERAS_OUT/predictions.csv@$KERAS_JOB" \
  "default (keras)=$DEFAULT_OUT/predictions.csv@$DEFAULT_JOB"
echo "Look the jobs up in the Prefect UI: pbe job show -n <job> --web"
echo
echo "Time per step:"
printf '%s\n' "${TIMINGS[@]}"
echo "Total: $(seconds_since "$RUN_STARTED") s"
