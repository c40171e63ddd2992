#!/usr/bin/env bash
# The az ml sequence of the mnist-classifier batch endpoint example
# (azureml-examples: cli/endpoints/batch/deploy-models/mnist-classifier/deploy-and-run.sh),
# with `pbe` written where the original has `az ml`. Differences from the original, all
# in what is given to the commands, none in the commands themselves:
#   - the models are trained here (examples/mnist/train.py, few epochs) on the MNIST files
#     bundled in examples/mnist/data (or $MNIST_DIR), and the input is a local folder of
#     $COUNT PNGs, not a public URL;
# Environment: PBE_HOME (the workspace), MNIST_DIR, WORK (scratch folder), COUNT,
# FRAMEWORKS ("torch keras" or "torch"). Every job is checked; the script exits non-zero
# at the first unexpected result.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
EXAMPLE="$REPO/examples/mnist"
WORK="${WORK:-$(mktemp -d)}"
COUNT="${COUNT:-40}"
FRAMEWORKS="${FRAMEWORKS:-torch keras}"
PYTHON="${PYTHON:-python}"
if ! command -v pbe >/dev/null 2>&1; then
  pbe() { "$PYTHON" -m deployments.cli "$@"; }
fi

step() { echo; echo "=== $(date +%T) $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

check_job() {  # <job> <status> [<deployment> [<mini-batches>]]: one `job show --query`
  local fields status deployment batches
  mapfile -t fields < <(pbe job show -n "$1" \
    --query "[status, deployment_name, properties.mini_batches]" -o tsv)  # one per line
  status=${fields[0]:-} deployment=${fields[1]:-} batches=${fields[2]:-}
  [[ "$status" == "$2" ]] || fail "job $1 is '$status', expected '$2'"
  [[ -z "${3:-}" || "$deployment" == "$3" ]] || fail "job $1 ran '$deployment', not '$3'"
  [[ -z "${4:-}" || "$batches" == "$4" ]] || fail "job $1 had $batches mini-batches, not $4"
  echo "job $1: $status ($deployment, $batches mini-batches)"
}

check_predictions() {  # <file> <rows>: az ml's append_row format, one row per image
  [[ -f "$1" ]] || fail "no predictions file at $1"
  local rows
  rows=$(wc -l <"$1")
  [[ "$rows" -eq "$2" ]] || fail "$1 has $rows rows, expected $2"
  head -n 2 "$1"
  awk 'NF != 3 { bad = 1 } END { exit bad }' "$1" || fail "$1 rows are not 'file class probability'"
}

step "Preparing the models and a folder of $COUNT PNGs"
"$PYTHON" "$EXAMPLE/train.py" --out "$WORK/models" \
  --framework "$([[ "$FRAMEWORKS" == *keras* ]] && echo both || echo torch)" \
  --train-count 2000 --epochs 2
"$PYTHON" "$EXAMPLE/data.py" --out "$WORK/sample" --count "$COUNT"
INPUT="$WORK/sample"

ENDPOINT_SUFIX=$(tr -dc 'a-z0-9' </dev/urandom | head -c 5 || true)
ENDPOINT_NAME="mnist-batch-$ENDPOINT_SUFIX"
DEPLOYMENT_NAME="mnist-torch-dpl"

step "Register the model"
MODEL_NAME='mnist-classifier-torch'
pbe model create --name $MODEL_NAME --type "custom_model" --path "$WORK/models/torch/model"

step "Creating compute"
pbe compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 5

step "Creating batch endpoint $ENDPOINT_NAME"
pbe batch-endpoint create --file "$EXAMPLE/endpoint.yml" --name $ENDPOINT_NAME

step "Showing details of the batch endpoint"
pbe batch-endpoint show --name $ENDPOINT_NAME

step "Creating batch deployment $DEPLOYMENT_NAME for endpoint $ENDPOINT_NAME"
pbe batch-deployment create --file "$EXAMPLE/deployment-torch/deployment.yml" \
  --endpoint-name $ENDPOINT_NAME --set-default

step "Showing details of the batch deployment"
pbe batch-deployment show --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME

step "Update the batch deployment as default for the endpoint"
pbe batch-endpoint update --name $ENDPOINT_NAME --set defaults.deployment_name=$DEPLOYMENT_NAME

step "Invoking batch endpoint"
JOB_NAME=$(pbe batch-endpoint invoke --name $ENDPOINT_NAME --input "$INPUT" --input-type uri_folder --query name -o tsv)
[[ "$JOB_NAME" == batchjob-* ]] || fail "unexpected job name '$JOB_NAME'"

step "Showing job detail"
pbe job show -n $JOB_NAME --web

step "Stream job logs to console"
pbe job stream -n $JOB_NAME

STATUS=$(pbe job show -n $JOB_NAME --query status -o tsv)
echo $STATUS
if [[ $STATUS == "Completed" ]]; then
  echo "Job completed"
elif [[ $STATUS == "Failed" ]]; then
  echo "Job failed"
  exit 1
else
  echo "Job status not failed or completed"
  exit 2
fi
OUTPUT=$(pbe job show -n $JOB_NAME --query outputs.score.path -o tsv)
check_predictions "$OUTPUT/predictions.csv" "$COUNT"

step "Invoke batch endpoint with specific output file name"
JOB_NAME=$(pbe batch-endpoint invoke --name $ENDPOINT_NAME --input "$INPUT" --output-path azureml://datastores/workspaceblobstore/paths/$ENDPOINT_NAME --set output_file_name=predictions.csv --query name -o tsv)
OUTPUT_PATH="$PBE_HOME/datastores/workspaceblobstore/$ENDPOINT_NAME"  # where that datastore path is
OUTPUT_JOB=$JOB_NAME  # not streamed, as in the original: it runs beside the next one

step "Invoke batch endpoint with specific overwrites"
JOB_NAME=$(pbe batch-endpoint invoke --name $ENDPOINT_NAME --input "$INPUT" --mini-batch-size 20 --instance-count 5 --query name -o tsv)

step "Stream job detail"
pbe job stream -n $JOB_NAME
check_job $JOB_NAME Completed mnist-torch-dpl $(( (COUNT + 19) / 20 ))
pbe job stream -n $OUTPUT_JOB >/dev/null
check_job $OUTPUT_JOB Completed
check_predictions "$OUTPUT_PATH/predictions.csv" "$COUNT"

step "List all jobs under the batch deployment"
JOBS=$(pbe batch-deployment list-jobs --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME --query [].name)
echo "$JOBS"
[[ $(grep -c batchjob- <<<"$JOBS") -eq 3 ]] || fail "expected 3 jobs of $DEPLOYMENT_NAME"

step "List all jobs under the batch endpoint"
pbe batch-endpoint list-jobs --name $ENDPOINT_NAME --query [].name

step "Download the scoring results"
pbe job download --name $JOB_NAME --output-name score --download-path "$WORK/download"
check_predictions "$WORK/download/named-outputs/score/predictions.csv" "$COUNT"

if [[ "$FRAMEWORKS" == *keras* ]]; then
  step "Register the keras model"
  MODEL_NAME='mnist-classifier-keras'
  pbe model create --name $MODEL_NAME --type "custom_model" --path "$WORK/models/keras/model"

  step "Creating new deployment (not default)"
  pbe batch-deployment create --file "$EXAMPLE/deployment-keras/deployment.yml" --endpoint-name $ENDPOINT_NAME
  DEFAULT=$(pbe batch-endpoint show --name $ENDPOINT_NAME --query defaults.deployment_name -o tsv)
  [[ "$DEFAULT" == "mnist-torch-dpl" ]] || fail "the default changed to '$DEFAULT'"

  step "Invoke non-default deployment"
  DEPLOYMENT_NAME="mnist-keras-dpl"
  JOB_NAME=$(pbe batch-endpoint invoke --name $ENDPOINT_NAME --deployment-name $DEPLOYMENT_NAME --input "$INPUT" --query name -o tsv)

  step "Stream job"
  pbe job stream -n $JOB_NAME
  check_job $JOB_NAME Completed $DEPLOYMENT_NAME

  step "Update the default deployment"
  pbe batch-endpoint update --name $ENDPOINT_NAME --set defaults.deployment_name=$DEPLOYMENT_NAME

  step "Show default deployment"
  pbe batch-endpoint show --name $ENDPOINT_NAME --query "{Name:name, Defaults:defaults}"

  step "Invoke the default deployment"
  JOB_NAME=$(pbe batch-endpoint invoke --name $ENDPOINT_NAME --input "$INPUT" --query name -o tsv)
  pbe job stream -n $JOB_NAME
  check_job $JOB_NAME Completed $DEPLOYMENT_NAME

  step "Delete the old deployment"
  pbe batch-deployment delete --name mnist-torch-dpl --endpoint-name $ENDPOINT_NAME --yes
  pbe batch-deployment list --endpoint-name $ENDPOINT_NAME --query [].name
fi

step "Delete endpoint"
pbe batch-endpoint delete --name $ENDPOINT_NAME --yes
if pbe batch-endpoint show --name $ENDPOINT_NAME 2>/dev/null; then
  fail "endpoint $ENDPOINT_NAME still exists"
fi
[[ -f "$OUTPUT_PATH/predictions.csv" ]] || fail "deleting the endpoint removed job outputs"

echo
echo "az ml sequence: OK"
