"""An emulated account as locked-down ones are: no default VPC, one private subnet."""

from __future__ import annotations

from dataclasses import dataclass

import boto3


@dataclass(frozen=True)
class Private:
    vpc_id: str
    subnet_id: str
    zone: str


def delete_default_vpc() -> None:
    """What an administrator does in such an account: its subnets, gateway and VPC, gone."""
    ec2 = boto3.client("ec2")
    for vpc in ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]:
        vpc_id = vpc["VpcId"]
        for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
            "Subnets"
        ]:
            ec2.delete_subnet(SubnetId=subnet["SubnetId"])
        for gateway in ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
        )["InternetGateways"]:
            ec2.detach_internet_gateway(
                InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc_id
            )
            ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
        ec2.delete_vpc(VpcId=vpc_id)
    assert not ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]


def private_subnet(zone: str = "us-east-1b") -> Private:
    """A VPC of its own and a subnet that gives no public address, tagged Tier=private."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc,
        CidrBlock="10.20.1.0/24",
        AvailabilityZone=zone,
        TagSpecifications=[
            {"ResourceType": "subnet", "Tags": [{"Key": "Tier", "Value": "private"}]}
        ],
    )["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": False})
    return Private(vpc, subnet, zone)


def locked_down() -> Private:
    delete_default_vpc()
    return private_subnet()
