#!/usr/bin/env bash
# Seed 004's stress script: POST JSON documents to the API through nginx.
#   stress.sh                 the seed's 50 POSTs, one after the other
#   stress.sh -n 2000 -c 50   2000 POSTs, 50 at a time
# Prints one task id per line; exits non-zero if any POST did not answer 202.
set -euo pipefail
url="${API_URL:-http://127.0.0.1:${HTTP_PORT:-8888}}/api/process_data"
total=50 concurrency=1
while getopts "n:c:" opt; do
    case "$opt" in
        n) total="$OPTARG" ;;
        c) concurrency="$OPTARG" ;;
        *) echo "usage: $0 [-n total] [-c concurrency]" >&2; exit 2 ;;
    esac
done
post() {
    body=$(printf '{"value": %d, "tags": ["stress"], "nested": {"weight": %d}}' "$1" "$(( $1 % 7 ))")
    out=$(curl -sS -o - -w '\n%{http_code}' -H 'Content-Type: application/json' --data "$body" "$url")
    code=${out##*$'\n'}
    [ "$code" = 202 ] || { echo "POST $1 answered $code: ${out%$'\n'*}" >&2; return 1; }
    printf '%s\n' "${out%$'\n'*}" | sed -nE 's/.*"task_id": *"([^"]+)".*/\1/p'
}
export -f post
export url
seq 1 "$total" | xargs -P "$concurrency" -I{} bash -c 'post {}'
