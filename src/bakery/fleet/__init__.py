"""The fleet: terraform/ driven from the catalog (launch, status, connect, destroy) and what it
costs (cost).

options    every launch option, checked before anything is written or applied
signin     the load balancer's certificate, OIDC issuer and client secret, checked in AWS
ami        the AMI the module will launch, refused here when it should not be
network    the VPC and subnets
tfroot     the generated root module: main.tf and terraform.auto.tfvars.json
root       one image's fleet in one region: its working folder, state and the emulator
group      the fleet as AWS sees it: the group, its instances, the way in, what is left
launch, status, destroy, cost   the tasks
"""
