"""A throwaway S3 server for the tests: moto on 127.0.0.1, with buckets made and, with --auth,
credentials checked.

Usage: moto-s3.py --port PORT [--host ADDRESS] --bucket NAME [--bucket NAME ...] [--auth]

ADDRESS is 127.0.0.1 unless given: the multi-host tests give their namespace bridge's address
(10.231.x.1), which every namespace host reaches.

Prints one JSON line when the server answers and the buckets exist:
{"accessKeyId": ..., "secretAccessKey": ...} (with --auth a user moto made, whose signatures it
checks; without, fixed fake ones that moto accepts as any). Then serves until its standard input
closes, so the server dies with the test process that started it, even one killed outright.
Runs in the virtual environment that scripts/setup.sh makes (.venv-moto).
"""

import argparse
import json
import logging
import os
import sys

import boto3
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bucket", action="append", default=[])
    parser.add_argument("--auth", action="store_true")
    args = parser.parse_args()

    # One line per request on stderr is noise in a test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Loopback, or a test namespace bridge: the tests never serve beyond this machine.
    if not (args.host == "127.0.0.1" or args.host.startswith("10.231.")):
        sys.exit("moto-s3.py serves only on 127.0.0.1 or a test bridge 10.231.x.1")
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    url = f"http://{args.host}:{args.port}"
    fake = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **fake)
    for bucket in args.bucket:
        s3.create_bucket(Bucket=bucket)
    creds = {"accessKeyId": "testing", "secretAccessKey": "testing"}
    if args.auth:
        iam = boto3.client("iam", **fake)
        user = "citus-recovery-test"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        creds = {
            "accessKeyId": key["AccessKeyId"],
            "secretAccessKey": key["SecretAccessKey"],
        }
        # From now on every request must be signed by a known key (the server runs in this
        # process, so its settings are ours to set).
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
    print(json.dumps(creds), flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
