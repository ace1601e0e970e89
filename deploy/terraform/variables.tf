# What an install may change. The defaults give the same objects as deploy/base.

variable "kubeconfig_path" {
  description = "The kubeconfig the provider uses."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "The kubeconfig context to use; null for the current one."
  type        = string
  default     = null
}

variable "image" {
  description = "The operator's image, which is also the runner pods' image unless an experiment sets spec.pod.image."
  type        = string
  default     = "ghcr.io/chaosflow/chaosflow:0.1.0"
}

variable "image_pull_policy" {
  description = "IfNotPresent for a release tag or an image loaded into the nodes (kind, minikube); Always for a moving tag."
  type        = string
  default     = "IfNotPresent"
}

variable "operator_namespace" {
  description = "The operator's namespace, and the only one whose ChaosToolkitExperiments it runs (the security boundary: whoever may create an experiment there chooses what its pods may do)."
  type        = string
  default     = "chaostoolkit-crd"
}

variable "run_namespace" {
  description = "The run namespace created here, so that experiment ConfigMaps and settings Secrets can go in before the first run. Experiments without spec.namespace run in chaostoolkit-run (the operator's default, as upstream's): set spec.namespace when you change this."
  type        = string
  default     = "chaostoolkit-run"
}

variable "log_format" {
  description = "The operator's console log format: string or json."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["string", "json"], var.log_format)
    error_message = "log_format is string or json."
  }
}
