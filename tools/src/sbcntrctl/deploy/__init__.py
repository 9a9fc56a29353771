"""Deploying the services to ECS on Fargate from the templates in ``taskdefs/``.

The templates use ecspresso's syntax (``{{ must_env `NAME` }}``,
``{{ env `NAME` `default` }}``) so the same files work with ecspresso.
"""
