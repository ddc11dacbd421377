# shellcheck shell=bash
# Sourced by the jobs that call AWS, after job-env.sh.
#
# GitLab's OIDC ID token (the job's id_tokens entry AWS_ID_TOKEN) goes into a file that boto3
# and Packer's AWS SDK exchange for the role's temporary credentials (AssumeRoleWithWebIdentity
# with AWS_ROLE_ARN) and refresh from while the job runs: the token is valid until the job's
# timeout. No access key is stored anywhere, and one found in the environment is refused,
# because the SDKs would quietly prefer it to the role.
if [ -n "${AWS_ACCESS_KEY_ID:-}${AWS_SECRET_ACCESS_KEY:-}${AWS_SESSION_TOKEN:-}${AWS_PROFILE:-}" ]; then
  echo "error: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE is set" \
    "(a CI/CD variable?): remove it; this pipeline reaches AWS through the OIDC role only" >&2
  exit 1
fi
: "${AWS_ID_TOKEN:?this job has no id_tokens entry AWS_ID_TOKEN}"
: "${AWS_ROLE_ARN:?set the CI/CD variable AWS_ROLE_ARN to the role of docs/gitlab-ci.md}"
: "${AWS_REGION:?set the CI/CD variable AWS_REGION to the region the images are baked in}"
AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp -d)/gitlab-id-token"
(umask 077 && printf '%s' "$AWS_ID_TOKEN" >"$AWS_WEB_IDENTITY_TOKEN_FILE")
# The session name shows in CloudTrail next to every call the job makes.
AWS_ROLE_SESSION_NAME="gitlab-${CI_PROJECT_ID:-local}-job-${CI_JOB_ID:-0}"
AWS_DEFAULT_REGION="$AWS_REGION"
export AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_REGION AWS_DEFAULT_REGION
echo "aws: assuming $AWS_ROLE_ARN with this job's GitLab ID token (session $AWS_ROLE_SESSION_NAME, $AWS_REGION)"
