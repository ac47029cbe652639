"""ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) for kext's resources, as
kube-apiserver's ValidatingAdmissionPolicy plugin runs them (cf. apiserver's
pkg/admission/plugin/policy/validating and .../generic):

- definition: the policies and bindings, read and checked as kube's API validates them;
- validator: a policy's CEL expressions compiled once, and evaluated for one binding and param;
- matching: whether a policy's matchConstraints and a binding's matchResources take a request;
- params: the objects a binding's paramRef names, read from kext's own resources;
- source: the policies and bindings in force (server.yaml's files, and the cluster's);
- dispatcher: the validating admission plugin itself, answering as kube does.
"""
