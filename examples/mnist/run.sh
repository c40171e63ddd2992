#!/usr/bin/env bash
# The MNIST batch endpoint example, end to end: the sequence of azureml-examples'
# cli/endpoints/batch/deploy-models/mnist-classifier/deploy-and-run.sh with `pbe` where
# it has `az ml`. It trains its two models here (torch and Keras, on CPU, in seconds),
# writes real handwritten digits as PNG files, deploys both models behind one endpoint,
# scores the digits with each, switches the default, and prints where the predictions are,
# their first rows, each deployment's accuracy against the labels, and the job names to
# look up in the Prefect UI.
#
# Settings (environment): MNIST_DIR (IDX files; default ../shared/data/mnist from the
# repository root, else downloaded/fallback, see data.py), COUNT (digits to score, default
# 1000) and START (first digit, default 8000: train.py trains on the first 8000 of the
# 10,000 test digits, so the default scores held-out ones), WORK (scratch folder), PBE_HOME
# (the pbe workspace, default ~/.pbe).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python}"
COUNT="${COUNT:-1000}"
START="${START:-8000}"
WORK="${WORK:-$HERE/.work}"
MNIST_DIR="${MNIST_DIR:-$REPO/../shared/data/mnist}"
MNIST_ARGS=()
if [[ -d "$MNIST_DIR" ]]; then
  MNIST_ARGS=(--mnist-dir "$MNIST_DIR")
else
  START=0  # a downloaded or fallback data set has its own split (see data.py)
fi
if ! command -v pbe >/dev/null 2>&1; then
  pbe() { "$PYTHON" -m deployments.cli "$@"; }
fi

step() { echo; echo "=== $*"; }
wait_for() {  # <job>: follow the job's logs; stop the example if it did not complete
  pbe job stream -n "$1" >/dev/null
  local status
  status=$(pbe job show -n "$1" --query status -o tsv)
  echo "job $1: $status"
  [[ "$status" == "Completed" ]] || { echo "job $1 ended $status" >&2; exit 1; }
}
output_of() { pbe job show -n "$1" --query outputs.score.path -o tsv; }

step "Training the models and writing $COUNT digits as PNG files"
mkdir -p "$WORK"
"$PYTHON" "$HERE/train.py" "${MNIST_ARGS[@]}" --out "$WORK/models" --framework both
rm -rf "$WORK/digits" "$WORK/digits_labels.csv"
"$PYTHON" "$HERE/data.py" "${MNIST_ARGS[@]}" --out "$WORK/digits" --count "$COUNT" --start "$START" \
  --labels-csv "$WORK/digits_labels.csv"
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

"$PYTHON" "$HERE/report.py" --labels "$WORK/digits_labels.csv" \
  "mnist-torch-dpl=$TORCH_OUT/predictions.csv@$TORCH_JOB" \
  "mnist-keras-dpl=$KERAS_OUT/predictions.csv@$KERAS_JOB" \
  "default (keras)=$DEFAULT_OUT/predictions.csv@$DEFAULT_JOB"
echo "Look the jobs up in the Prefect UI: pbe job show -n <job> --web"
