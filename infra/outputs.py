"""Stack output names: the contract between the program, the driver, workflows and tests.

The driver reads outputs by these names (never by reaching into components), so renaming one
is a breaking change for every stack that already exists.
"""

from __future__ import annotations

REGION = "region"
ENVIRONMENT = "environment"
RELEASE_VERSION = "releaseVersion"

# trust
OIDC_PROVIDER_ARN = "oidcProviderArn"
DEPLOY_ROLE_ARN = "deployRoleArn"
PREVIEW_ROLE_ARN = "previewRoleArn"

# artifacts
ARTIFACT_BUCKET = "artifactBucket"
ECR_REPOSITORY_NAME = "ecrRepositoryName"
ECR_REPOSITORY_URL = "ecrRepositoryUrl"

# application platform
API_URL = "apiUrl"
FUNCTION_NAMES = "functionNames"  # {service: function name}
ALIAS_ARNS = "aliasArns"  # {service: ARN of the live alias}
LIVE_VERSIONS = "liveVersions"  # {service: primary version of `live`}: what it serves (not a canary)
PUBLISHED_VERSIONS = "publishedVersions"  # {service: version the last deployment published}
HEALTH_PATHS = "healthPaths"  # {service: path checked through the API URL}
FRONTEND_BUCKET = "frontendBucket"
APP_DISTRIBUTION_ID = "appDistributionId"
APP_DOMAIN = "appDomain"
TEST_DISTRIBUTION_ID = "testDistributionId"
TEST_DOMAIN = "testDomain"
ALERT_TOPIC_ARN = "alertTopicArn"
ALARM_NAMES = "alarmNames"  # [alarm name]: promotion polls these while a release bakes
DASHBOARD_NAME = "dashboardName"

# GitHub
GITHUB_ENVIRONMENT = "githubEnvironment"
