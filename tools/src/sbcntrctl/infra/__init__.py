"""The AWS infrastructure under ``infra/`` (CloudFormation): deploy, read back, delete.

Also the maintenance switch on the public ALB, and the bridge from stack outputs
to the variables the task definitions in ``taskdefs/`` need.
"""
