"""AuthService: policies and tokens through the replicated log; lookups after a read barrier.

Authorization of these methods is the wrapper's (vaultd.api.auth, table vaultd.api.targets: admin for all
but LookupSelf). Token secrets are generated here, on the receiving node: the log carries only the sha256 of
the secret (generated values travel in the command, apply stays deterministic), and the bearer token is in
the CreateToken answer alone.
"""

from __future__ import annotations

import grpc

from vaultd.api import auth, errors
from vaultd.api.base import ServicerBase, unary
from vaultd.api.convert import timestamp
from vaultd.store import commands as cmd
from vaultd.store import policies as pol
from vaultd.store.results import PolicyInfo, TokenInfo
from vaultd.v1 import auth_pb2, auth_pb2_grpc


def policy_message(info: PolicyInfo) -> auth_pb2.Policy:
    return auth_pb2.Policy(name=info.name, created_at=timestamp(info.created_at),
                           updated_at=timestamp(info.updated_at),
                           rules=[auth_pb2.PolicyRule(vault_glob=r.vault_glob, capabilities=list(r.capabilities))
                                  for r in info.rules])


def token_message(info: TokenInfo) -> auth_pb2.Token:
    return auth_pb2.Token(token_id=info.token_id, name=info.name, policies=list(info.policies),
                          created_at=timestamp(info.created_at), expires_at=timestamp(info.expires_at),
                          revoked=info.revoked)


class AuthServicer(ServicerBase, auth_pb2_grpc.AuthServiceServicer):
    @unary
    def PutPolicy(self, request: auth_pb2.Policy, context: grpc.ServicerContext) -> auth_pb2.Policy:
        command = cmd.PutPolicy(pol.validate_policy_name(request.name), pol.validate_rules(
            [cmd.PolicyRule(r.vault_glob, tuple(r.capabilities)) for r in request.rules]))
        return policy_message(self.submit(context, request.request_id, command))

    @unary
    def GetPolicy(self, request: auth_pb2.GetPolicyRequest, context: grpc.ServicerContext) -> auth_pb2.Policy:
        name = pol.validate_policy_name(request.name)
        return policy_message(self.reader(context).policy(name))

    @unary
    def ListPolicies(self, request: auth_pb2.ListPoliciesRequest,
                     context: grpc.ServicerContext) -> auth_pb2.ListPoliciesResponse:
        return auth_pb2.ListPoliciesResponse(policies=[policy_message(p) for p in self.reader(context).policies()])

    @unary
    def DeletePolicy(self, request: auth_pb2.DeletePolicyRequest,
                     context: grpc.ServicerContext) -> auth_pb2.DeletePolicyResponse:
        self.submit(context, request.request_id, cmd.DeletePolicy(pol.validate_policy_name(request.name)))
        return auth_pb2.DeletePolicyResponse()

    @unary
    def CreateToken(self, request: auth_pb2.CreateTokenRequest,
                    context: grpc.ServicerContext) -> auth_pb2.CreateTokenResponse:
        token_id, bearer, digest = auth.new_token()
        command = cmd.CreateToken(token_id, pol.validate_token_name(request.name),
                                  pol.validate_token_policies(list(request.policies)), digest,
                                  pol.validate_ttl(request.ttl_seconds))
        info = self.submit(context, request.request_id, command)
        if info.token_id != token_id:
            # A retry of a request that already created a token: the store answers with that token, whose
            # secret was in the first answer only. Never hand out a secret that does not belong to it.
            raise errors.ApiError(
                grpc.StatusCode.FAILED_PRECONDITION, errors.TOKEN_ALREADY_CREATED,
                "this request id already created a token; its secret was shown once: revoke it and create another",
                {"token_id": info.token_id})
        return auth_pb2.CreateTokenResponse(token_id=token_id, secret=bearer, token=token_message(info))

    @unary
    def RevokeToken(self, request: auth_pb2.RevokeTokenRequest, context: grpc.ServicerContext) -> auth_pb2.Token:
        token_id = pol.validate_token_id(request.token_id)
        return token_message(self.submit(context, request.request_id, cmd.RevokeToken(token_id)))

    @unary
    def ListTokens(self, request: auth_pb2.ListTokensRequest,
                   context: grpc.ServicerContext) -> auth_pb2.ListTokensResponse:
        return auth_pb2.ListTokensResponse(tokens=[token_message(t) for t in self.reader(context).tokens()])

    @unary
    def LookupSelf(self, request: auth_pb2.LookupSelfRequest, context: grpc.ServicerContext) -> auth_pb2.Token:
        """The calling token. The root token (and every call on a node without auth) is `root`."""
        principal = auth.current_principal.get()
        if principal is None or principal.token is None:
            name = auth.ROOT_PRINCIPAL if principal is not None else "anonymous (node runs --insecure-no-auth)"
            return auth_pb2.Token(token_id=auth.ROOT_PRINCIPAL if principal is not None else "", name=name,
                                  root=True)
        return token_message(principal.token)
