# shellcheck shell=bash
# Sourced by verify, publish and prune: ends the job, successfully, when this pipeline's bake
# of $IMAGE built nothing because an AMI with the same fingerprint already exists. BAKERY_BAKED
# and BAKERY_AMI_ID come from the bake job's dotenv report (build/bake.env, which
# `invoke bake` writes as build/$IMAGE/bake.env).
case "${BAKERY_BAKED:-}" in
  true)
    echo "$CI_JOB_NAME: going on with $BAKERY_AMI_ID, which this pipeline's bake of $IMAGE built"
    ;;
  false)
    echo "$CI_JOB_NAME: skipped: the bake of $IMAGE built nothing (its fingerprint is unchanged;" \
      "$BAKERY_AMI_ID has it). Run the schedule with BAKERY_FORCE_REBUILD=true to rebuild anyway."
    exit 0
    ;;
  *)
    echo "error: BAKERY_BAKED is '${BAKERY_BAKED:-}', not true or false: the bake job's dotenv" \
      "report (build/bake.env) did not reach $CI_JOB_NAME" >&2
    exit 1
    ;;
esac
