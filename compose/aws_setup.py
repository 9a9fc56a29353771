"""Create what the log router writes to, in the local AWS emulator (docker compose only).

On AWS these exist before the tasks start (taskdefs/README.md); here they are
made once, idempotently: the log bucket and the log groups.
"""

import os

import boto3

endpoint = os.environ["AWS_ENDPOINT_URL"]
region = os.environ["AWS_REGION"]
bucket = os.environ["LOG_BUCKET"]
groups = os.environ["LOG_GROUPS"].split(",")

s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})

logs = boto3.client("logs", endpoint_url=endpoint, region_name=region)
existing = {g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]}
for group in groups:
    if group not in existing:
        logs.create_log_group(logGroupName=group)
        logs.put_retention_policy(logGroupName=group, retentionInDays=7)
print(f"bucket {bucket} and log groups {', '.join(groups)} ready", flush=True)
