# Where to look once applied.

output "operator_namespace" {
  description = "Create ChaosToolkitExperiments here: kubectl -n <this> get ctk."
  value       = kubernetes_namespace_v1.operator.metadata[0].name
}

output "run_namespace" {
  description = "Put experiment ConfigMaps and the settings Secret here."
  value       = kubernetes_namespace_v1.run.metadata[0].name
}

output "metrics_service" {
  description = "The Service in front of the operator's /metrics (port http-metrics, 8080)."
  value       = "${kubernetes_service_v1.operator.metadata[0].namespace}/${kubernetes_service_v1.operator.metadata[0].name}"
}
