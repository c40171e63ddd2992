#!/usr/bin/env bash
# The tabular MLflow example, end to end: the platform's no-code MLflow sequence
# (register an MLflow model, a data asset of CSV files, an endpoint, a deployment with no
# scoring script and no environment, invoke it on the data asset, download predictions.csv)
# with `pbe` where it has `az ml`. train.py trains a scikit-learn classifier on the breast
# cancer data scikit-learn ships (offline) and writes the held-out rows, unlabeled, as CSV
# and Parquet files; the end compares the predictions with their labels.
#
# Settings (environment): WORK (scratch folder, default examples/tabular/.work), PBE_HOME
# (the pbe workspace, default ~/.pbe), PYTHON. Needs the [mlflow] extra:
# pip install -e ".[mlflow]" (mlflow-skinny and pyarrow).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
WORK="${WORK:-$HERE/.work}"
if ! command -v pbe >/dev/null 2>&1; then
  pbe() { "$PYTHON" -m deployments.cli "$@"; }
fi
step() { echo; echo "=== $*"; }

step "Training the classifier and writing the unlabeled CSV and Parquet files"
mkdir -p "$WORK"
"$PYTHON" "$HERE/train.py" --out "$WORK"

SUFFIX=$(tr -dc 'a-z0-9' </dev/urandom | head -c 5 || true)
ENDPOINT_NAME="tabular-batch-$SUFFIX"
DEPLOYMENT_NAME="classifier-mlflow"

step "Registering the MLflow model"
pbe model create --name breast-cancer-classifier --type mlflow_model --path "$WORK/model" \
  --query "{name:name, version:version, flavors:keys(flavors)}" -o json

step "Creating compute"
pbe compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 2 \
  --query name -o tsv

step "Registering the unlabeled data as a data asset"
pbe data create --name breast-cancer-unlabeled --type uri_folder --path "$WORK/data" \
  --description "Unlabeled rows for the breast cancer classifier." \
  --query "{name:name, version:version}" -o tsv

step "Creating batch endpoint $ENDPOINT_NAME"
pbe batch-endpoint create --file "$HERE/endpoint.yml" --name "$ENDPOINT_NAME" --query name -o tsv

step "Creating batch deployment $DEPLOYMENT_NAME (no code, no environment; the default)"
pbe batch-deployment create --file "$HERE/deployment.yml" --endpoint-name "$ENDPOINT_NAME" \
  --set-default --query "{name:name, code:code_configuration}" -o json

step "Invoking the endpoint on the data asset"
JOB=$(pbe batch-endpoint invoke --name "$ENDPOINT_NAME" \
  --input azureml:breast-cancer-unlabeled@latest --query name -o tsv)
echo "waiting for job $JOB (follow it: pbe job stream -n $JOB)"
pbe job stream -n "$JOB" >/dev/null || true
STATUS=$(pbe job show -n "$JOB" --query status -o tsv)
echo "job $JOB: $STATUS"
[[ "$STATUS" == "Completed" ]] || { echo "job $JOB ended $STATUS" >&2; exit 1; }

step "Downloading the predictions"
rm -rf "$WORK/download"
pbe job download -n "$JOB" --output-name score --download-path "$WORK/download" \
  --query downloaded -o tsv

step "Deleting the endpoint (job outputs are kept)"
pbe batch-endpoint delete --name "$ENDPOINT_NAME" --yes

step "Accuracy against the held-out labels"
"$PYTHON" "$HERE/report.py" --labels "$WORK/labels.csv" \
  "$WORK/download/named-outputs/score/predictions.csv"
