"""What pgha deploys: the service roles and the limits that config, components, image and policy pack share.

Pure standard-library Python: the policy pack imports it from a virtual environment that holds only
pulumi-policy and PyYAML.
"""
