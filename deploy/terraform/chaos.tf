# chaosflow's operator with Terraform: the objects of deploy/base (namespaces, RBAC, Deployment,
# metrics Service, CRD), with the image and namespaces as variables (variables.tf).
#   terraform init && terraform apply
# The CRD is deploy/base/crd.yaml itself, read through kubernetes_manifest, so there is one
# definition to keep up to date. scripts/check-deploy checks that the RBAC rules below match
# deploy/base/rbac.yaml.

terraform {
  required_version = ">= 1.3"
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
  }
}

provider "kubernetes" {
  config_path    = var.kubeconfig_path
  config_context = var.kube_context
}

locals {
  labels = {
    "app.kubernetes.io/name"    = "chaosflow-operator"
    "app.kubernetes.io/part-of" = "chaosflow"
  }
}

# kubernetes_manifest needs the cluster reachable at plan time (it reads the API's schema).
resource "kubernetes_manifest" "crd" {
  manifest = yamldecode(file("${path.module}/../base/crd.yaml"))
}

# The operator's namespace holds only the operator pod, which meets the `restricted` Pod
# Security Standard; runner pods are held to `baseline` and warned against `restricted`.
resource "kubernetes_namespace_v1" "operator" {
  metadata {
    name = var.operator_namespace
    labels = {
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
      "pod-security.kubernetes.io/audit"   = "restricted"
    }
  }
}

resource "kubernetes_namespace_v1" "run" {
  metadata {
    name = var.run_namespace
    labels = {
      "pod-security.kubernetes.io/enforce" = "baseline"
      "pod-security.kubernetes.io/warn"    = "restricted"
      "pod-security.kubernetes.io/audit"   = "restricted"
    }
  }
}

resource "kubernetes_service_account_v1" "operator" {
  metadata {
    name      = "chaosflow-operator"
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
  }
}

# The experiments themselves, bound in the operator's namespace only (see deploy/base/rbac.yaml
# for why each rule is there).
resource "kubernetes_cluster_role_v1" "experiments" {
  metadata {
    name = "chaosflow-operator-experiments"
  }
  rule {
    api_groups = ["chaostoolkit.org"]
    resources  = ["chaosexperiments"]
    verbs      = ["get", "list", "watch", "patch", "update"]
  }
  rule {
    api_groups = ["chaostoolkit.org"]
    resources  = ["chaosexperiments/status"]
    verbs      = ["get", "patch", "update"]
  }
  rule {
    api_groups = ["chaostoolkit.org"]
    resources  = ["chaosexperiments/finalizers"]
    verbs      = ["update"]
  }
}

resource "kubernetes_role_binding_v1" "experiments" {
  metadata {
    name      = "chaosflow-operator-experiments"
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.experiments.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.operator.metadata[0].name
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
  }
}

# What each run needs, in any run namespace; the last four rules are the runner Role's, held
# only because Kubernetes forbids granting what one does not hold.
resource "kubernetes_cluster_role_v1" "operator" {
  metadata {
    name = "chaosflow-operator"
  }
  rule {
    api_groups     = ["apiextensions.k8s.io"]
    resources      = ["customresourcedefinitions"]
    resource_names = ["chaosexperiments.chaostoolkit.org"]
    verbs          = ["get"]
  }
  rule {
    api_groups = [""]
    resources  = ["namespaces"]
    verbs      = ["get", "create"]
  }
  rule {
    api_groups = [""]
    resources  = ["serviceaccounts"]
    verbs      = ["list", "create", "patch", "delete"]
  }
  rule {
    api_groups = ["rbac.authorization.k8s.io"]
    resources  = ["roles", "rolebindings"]
    verbs      = ["list", "create", "patch", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods"]
    verbs      = ["get", "list", "watch", "create", "delete"]
  }
  rule {
    api_groups = ["batch"]
    resources  = ["cronjobs"]
    verbs      = ["list", "create", "patch", "delete"]
  }
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["list", "delete"]
  }
  rule {
    api_groups = ["events.k8s.io"]
    resources  = ["events"]
    verbs      = ["create", "patch"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods", "services", "endpoints", "configmaps"]
    verbs      = ["create", "get", "delete", "list"]
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments"]
    verbs      = ["create", "get", "delete", "list"]
  }
  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["ingresses"]
    verbs      = ["create", "get", "delete", "list"]
  }
  rule {
    api_groups = [""]
    resources  = ["events"]
    verbs      = ["list"]
  }
}

resource "kubernetes_cluster_role_binding_v1" "operator" {
  metadata {
    name = "chaosflow-operator"
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.operator.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.operator.metadata[0].name
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
  }
}

# One replica, no leader election: Recreate stops the old pod before the new one starts.
resource "kubernetes_deployment_v1" "operator" {
  metadata {
    name      = "chaosflow-operator"
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
    labels    = local.labels
  }

  spec {
    replicas = 1
    strategy {
      type = "Recreate"
    }
    selector {
      match_labels = {
        "app.kubernetes.io/name" = "chaosflow-operator"
      }
    }

    template {
      metadata {
        labels = local.labels
      }

      spec {
        service_account_name            = kubernetes_service_account_v1.operator.metadata[0].name
        automount_service_account_token = true

        security_context {
          run_as_non_root = true
          run_as_user     = 1001
          run_as_group    = 1001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name              = "operator"
          image             = var.image
          image_pull_policy = var.image_pull_policy
          # The watched namespace is the operator's own (the security boundary). Add
          # "--verbose" for debug logs.
          args = ["operator", "--namespace", var.operator_namespace, "--log-format", var.log_format]

          # The operator reads its own pod to learn its image, the runner pods' default.
          env {
            name = "POD_NAME"
            value_from {
              field_ref {
                field_path = "metadata.name"
              }
            }
          }
          env {
            name = "POD_NAMESPACE"
            value_from {
              field_ref {
                field_path = "metadata.namespace"
              }
            }
          }

          port {
            name           = "http-metrics"
            container_port = 8080
            protocol       = "TCP"
          }

          liveness_probe {
            http_get {
              path = "/healthz"
              port = "http-metrics"
            }
            period_seconds = 20
          }
          readiness_probe {
            http_get {
              path = "/readyz"
              port = "http-metrics"
            }
            period_seconds = 10
          }

          resources {
            requests = {
              cpu    = "50m"
              memory = "32Mi"
            }
            limits = {
              cpu    = "500m"
              memory = "128Mi"
            }
          }

          security_context {
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            capabilities {
              drop = ["ALL"]
            }
          }
        }
      }
    }
  }

  # The CRD and the permissions must be there before the operator starts.
  depends_on = [
    kubernetes_manifest.crd,
    kubernetes_cluster_role_binding_v1.operator,
    kubernetes_role_binding_v1.experiments,
  ]
}

resource "kubernetes_service_v1" "operator" {
  metadata {
    name      = "chaosflow-operator"
    namespace = kubernetes_namespace_v1.operator.metadata[0].name
    labels    = local.labels
    annotations = {
      "prometheus.io/scrape" = "true"
      "prometheus.io/port"   = "8080"
      "prometheus.io/path"   = "/metrics"
    }
  }
  spec {
    type = "ClusterIP"
    selector = {
      "app.kubernetes.io/name" = "chaosflow-operator"
    }
    port {
      name        = "http-metrics"
      port        = 8080
      target_port = "http-metrics"
      protocol    = "TCP"
    }
  }
}
