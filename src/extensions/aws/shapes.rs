//! The EC2 Query API's XML responses as boto3 returns them: dicts with PascalCase keys.
//!
//! boto3 parses every response against the service's model: it keeps only the members the model
//! names, in the model's order, renames them (`instancesSet` becomes `Instances`,
//! `instanceState` becomes `State`, `dnsName` becomes `PublicDnsName`), turns `<item>` lists
//! into lists, integers into ints, booleans into bools and timestamps into datetimes (which
//! `chaos` writes as `2026-11-25T15:24:32+00:00`), then adds `ResponseMetadata`. This module
//! holds the part of the EC2 model (API version 2016-11-15) that the responses of
//! `DescribeInstances`, `StopInstances`, `StartInstances`, `TerminateInstances` and
//! `CancelSpotInstanceRequests` reach, written down as tables, and the conversion they drive.
//! Elements the tables do not name are dropped, as boto3 drops what its model does not know.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use roxmltree::Node;
use serde_json::{Map, Value};

/// The type of a member.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    /// A string (also enums and ids).
    Str,
    /// An integer.
    Int,
    /// `true`/`false`.
    Bool,
    /// An ISO 8601 timestamp.
    Time,
    /// A structure.
    Struct(&'static [Member]),
    /// A list of structures (`<item>` children).
    List(&'static [Member]),
    /// A list of strings (`<item>` children).
    StrList,
}

/// One member of a structure: its XML element name, its key in boto3's dict (empty: the
/// element name with its first letter upper-cased) and its type.
#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    xml: &'static str,
    key: &'static str,
    ty: Ty,
}

macro_rules! m {
    ($xml:literal) => {
        Member {
            xml: $xml,
            key: "",
            ty: Ty::Str,
        }
    };
    ($xml:literal, $ty:expr) => {
        Member {
            xml: $xml,
            key: "",
            ty: $ty,
        }
    };
    ($xml:literal => $key:literal) => {
        Member {
            xml: $xml,
            key: $key,
            ty: Ty::Str,
        }
    };
    ($xml:literal => $key:literal, $ty:expr) => {
        Member {
            xml: $xml,
            key: $key,
            ty: $ty,
        }
    };
}

use Ty::{Bool as B, Int as I, List as L, Struct as S, Time as T};

const GROUP_IDENTIFIER: &[Member] = &[m!("groupId"), m!("groupName")];

const OPERATOR: &[Member] = &[m!("managed", B), m!("principal"), m!("hiddenByDefault", B)];

const EBS_INSTANCE_BLOCK_DEVICE: &[Member] = &[
    m!("attachTime", T),
    m!("deleteOnTermination", B),
    m!("status"),
    m!("volumeId"),
    m!("associatedResource"),
    m!("volumeOwnerId"),
    m!("operator", S(OPERATOR)),
    m!("ebsCardIndex", I),
];

const INSTANCE_BLOCK_DEVICE_MAPPING: &[Member] =
    &[m!("deviceName"), m!("ebs", S(EBS_INSTANCE_BLOCK_DEVICE))];

const IAM_INSTANCE_PROFILE: &[Member] = &[m!("arn"), m!("id")];

const ELASTIC_GPU_ASSOCIATION: &[Member] = &[
    m!("elasticGpuId"),
    m!("elasticGpuAssociationId"),
    m!("elasticGpuAssociationState"),
    m!("elasticGpuAssociationTime"),
];

const ELASTIC_INFERENCE_ACCELERATOR_ASSOCIATION: &[Member] = &[
    m!("elasticInferenceAcceleratorArn"),
    m!("elasticInferenceAcceleratorAssociationId"),
    m!("elasticInferenceAcceleratorAssociationState"),
    m!("elasticInferenceAcceleratorAssociationTime", T),
];

const NETWORK_INTERFACE_ASSOCIATION: &[Member] = &[
    m!("carrierIp"),
    m!("customerOwnedIp"),
    m!("ipOwnerId"),
    m!("publicDnsName"),
    m!("publicIp"),
];

const ENA_SRD_UDP: &[Member] = &[m!("enaSrdUdpEnabled", B)];

const ENA_SRD: &[Member] = &[
    m!("enaSrdEnabled", B),
    m!("enaSrdUdpSpecification", S(ENA_SRD_UDP)),
];

const NETWORK_INTERFACE_ATTACHMENT: &[Member] = &[
    m!("attachTime", T),
    m!("attachmentId"),
    m!("deleteOnTermination", B),
    m!("deviceIndex", I),
    m!("status"),
    m!("networkCardIndex", I),
    m!("enaSrdSpecification", S(ENA_SRD)),
    m!("enaQueueCount", I),
];

const IPV6_ADDRESS: &[Member] = &[m!("ipv6Address"), m!("isPrimaryIpv6", B)];

const PRIVATE_IP_ADDRESS: &[Member] = &[
    m!("association", S(NETWORK_INTERFACE_ASSOCIATION)),
    m!("primary", B),
    m!("privateDnsName"),
    m!("privateIpAddress"),
];

const IPV4_PREFIX: &[Member] = &[m!("ipv4Prefix")];
const IPV6_PREFIX: &[Member] = &[m!("ipv6Prefix")];

const CONNECTION_TRACKING: &[Member] = &[
    m!("tcpEstablishedTimeout", I),
    m!("udpStreamTimeout", I),
    m!("udpTimeout", I),
];

const NETWORK_INTERFACE: &[Member] = &[
    m!("association", S(NETWORK_INTERFACE_ASSOCIATION)),
    m!("attachment", S(NETWORK_INTERFACE_ATTACHMENT)),
    m!("description"),
    m!("groupSet" => "Groups", L(GROUP_IDENTIFIER)),
    m!("ipv6AddressesSet" => "Ipv6Addresses", L(IPV6_ADDRESS)),
    m!("macAddress"),
    m!("networkInterfaceId"),
    m!("ownerId"),
    m!("privateDnsName"),
    m!("privateIpAddress"),
    m!("privateIpAddressesSet" => "PrivateIpAddresses", L(PRIVATE_IP_ADDRESS)),
    m!("sourceDestCheck", B),
    m!("status"),
    m!("subnetId"),
    m!("vpcId"),
    m!("interfaceType"),
    m!("ipv4PrefixSet" => "Ipv4Prefixes", L(IPV4_PREFIX)),
    m!("ipv6PrefixSet" => "Ipv6Prefixes", L(IPV6_PREFIX)),
    m!("connectionTrackingConfiguration", S(CONNECTION_TRACKING)),
    m!("operator", S(OPERATOR)),
];

const STATE_REASON: &[Member] = &[m!("code"), m!("message")];

const TAG: &[Member] = &[m!("key"), m!("value")];

const CPU_OPTIONS: &[Member] = &[
    m!("coreCount", I),
    m!("threadsPerCore", I),
    m!("amdSevSnp"),
    m!("nestedVirtualization"),
];

const CAPACITY_RESERVATION_TARGET: &[Member] = &[
    m!("capacityReservationId"),
    m!("capacityReservationResourceGroupArn"),
];

const CAPACITY_RESERVATION_SPECIFICATION: &[Member] = &[
    m!("capacityReservationPreference"),
    m!("capacityReservationTarget", S(CAPACITY_RESERVATION_TARGET)),
];

const HIBERNATION_OPTIONS: &[Member] = &[m!("configured", B)];

const LICENSE: &[Member] = &[m!("licenseConfigurationArn")];

const METADATA_OPTIONS: &[Member] = &[
    m!("state"),
    m!("httpTokens"),
    m!("httpPutResponseHopLimit", I),
    m!("httpEndpoint"),
    m!("httpProtocolIpv6"),
    m!("instanceMetadataTags"),
];

const ENCLAVE_OPTIONS: &[Member] = &[m!("enabled", B)];

const PRIVATE_DNS_NAME_OPTIONS: &[Member] = &[
    m!("hostnameType"),
    m!("enableResourceNameDnsARecord", B),
    m!("enableResourceNameDnsAAAARecord", B),
];

const MAINTENANCE_OPTIONS: &[Member] = &[m!("autoRecovery"), m!("rebootMigration")];

const NETWORK_PERFORMANCE_OPTIONS: &[Member] = &[m!("bandwidthWeighting")];

const SECONDARY_INTERFACE_ATTACHMENT: &[Member] = &[
    m!("attachTime", T),
    m!("attachmentId"),
    m!("deleteOnTermination", B),
    m!("deviceIndex", I),
    m!("status"),
    m!("networkCardIndex", I),
];

const SECONDARY_INTERFACE_PRIVATE_IP: &[Member] = &[m!("privateIpAddress")];

const SECONDARY_INTERFACE: &[Member] = &[
    m!("attachment", S(SECONDARY_INTERFACE_ATTACHMENT)),
    m!("macAddress"),
    m!("secondaryInterfaceId"),
    m!("ownerId"),
    m!("privateIpAddressSet" => "PrivateIpAddresses", L(SECONDARY_INTERFACE_PRIVATE_IP)),
    m!("sourceDestCheck", B),
    m!("status"),
    m!("secondarySubnetId"),
    m!("secondaryNetworkId"),
    m!("interfaceType"),
];

const INSTANCE_STATE: &[Member] = &[m!("code", I), m!("name")];

const PRODUCT_CODE: &[Member] = &[
    m!("productCode" => "ProductCodeId"),
    m!("type" => "ProductCodeType"),
];

const PLACEMENT: &[Member] = &[
    m!("availabilityZoneId"),
    m!("affinity"),
    m!("groupName"),
    m!("partitionNumber", I),
    m!("hostId"),
    m!("tenancy"),
    m!("spreadDomain"),
    m!("hostResourceGroupArn"),
    m!("groupId"),
    m!("availabilityZone"),
];

const MONITORING: &[Member] = &[
    m!("metricCategoryIdSet" => "MetricCategoryIds", Ty::StrList),
    m!("state"),
];

const INSTANCE: &[Member] = &[
    m!("architecture"),
    m!("blockDeviceMapping" => "BlockDeviceMappings", L(INSTANCE_BLOCK_DEVICE_MAPPING)),
    m!("clientToken"),
    m!("ebsOptimized", B),
    m!("enaSupport", B),
    m!("hypervisor"),
    m!("iamInstanceProfile", S(IAM_INSTANCE_PROFILE)),
    m!("instanceLifecycle"),
    m!("elasticGpuAssociationSet" => "ElasticGpuAssociations", L(ELASTIC_GPU_ASSOCIATION)),
    m!(
        "elasticInferenceAcceleratorAssociationSet" => "ElasticInferenceAcceleratorAssociations",
        L(ELASTIC_INFERENCE_ACCELERATOR_ASSOCIATION)
    ),
    m!("networkInterfaceSet" => "NetworkInterfaces", L(NETWORK_INTERFACE)),
    m!("outpostArn"),
    m!("rootDeviceName"),
    m!("rootDeviceType"),
    m!("groupSet" => "SecurityGroups", L(GROUP_IDENTIFIER)),
    m!("sourceDestCheck", B),
    m!("spotInstanceRequestId"),
    m!("sriovNetSupport"),
    m!("stateReason", S(STATE_REASON)),
    m!("tagSet" => "Tags", L(TAG)),
    m!("virtualizationType"),
    m!("cpuOptions", S(CPU_OPTIONS)),
    m!("capacityBlockId"),
    m!("capacityReservationId"),
    m!(
        "capacityReservationSpecification",
        S(CAPACITY_RESERVATION_SPECIFICATION)
    ),
    m!("hibernationOptions", S(HIBERNATION_OPTIONS)),
    m!("licenseSet" => "Licenses", L(LICENSE)),
    m!("metadataOptions", S(METADATA_OPTIONS)),
    m!("enclaveOptions", S(ENCLAVE_OPTIONS)),
    m!("bootMode"),
    m!("platformDetails"),
    m!("usageOperation"),
    m!("usageOperationUpdateTime", T),
    m!("privateDnsNameOptions", S(PRIVATE_DNS_NAME_OPTIONS)),
    m!("ipv6Address"),
    m!("tpmSupport"),
    m!("maintenanceOptions", S(MAINTENANCE_OPTIONS)),
    m!("currentInstanceBootMode"),
    m!("networkPerformanceOptions", S(NETWORK_PERFORMANCE_OPTIONS)),
    m!("operator", S(OPERATOR)),
    m!("secondaryInterfaceSet" => "SecondaryInterfaces", L(SECONDARY_INTERFACE)),
    m!("instanceId"),
    m!("imageId"),
    m!("instanceState" => "State", S(INSTANCE_STATE)),
    m!("privateDnsName"),
    m!("dnsName" => "PublicDnsName"),
    m!("reason" => "StateTransitionReason"),
    m!("keyName"),
    m!("amiLaunchIndex", I),
    m!("productCodes", L(PRODUCT_CODE)),
    m!("instanceType"),
    m!("launchTime", T),
    m!("placement", S(PLACEMENT)),
    m!("kernelId"),
    m!("ramdiskId"),
    m!("platform"),
    m!("monitoring", S(MONITORING)),
    m!("subnetId"),
    m!("vpcId"),
    m!("privateIpAddress"),
    m!("ipAddress" => "PublicIpAddress"),
];

const RESERVATION: &[Member] = &[
    m!("reservationId"),
    m!("ownerId"),
    m!("requesterId"),
    m!("groupSet" => "Groups", L(GROUP_IDENTIFIER)),
    m!("instancesSet" => "Instances", L(INSTANCE)),
];

const INSTANCE_STATE_CHANGE: &[Member] = &[
    m!("instanceId"),
    m!("currentState", S(INSTANCE_STATE)),
    m!("previousState", S(INSTANCE_STATE)),
];

const CANCELLED_SPOT_INSTANCE_REQUEST: &[Member] = &[m!("spotInstanceRequestId"), m!("state")];

/// `DescribeInstances`' output.
pub(super) const DESCRIBE_INSTANCES: &[Member] = &[
    m!("nextToken"),
    m!("reservationSet" => "Reservations", L(RESERVATION)),
];

/// `StopInstances`' output.
pub(super) const STOP_INSTANCES: &[Member] =
    &[m!("instancesSet" => "StoppingInstances", L(INSTANCE_STATE_CHANGE))];

/// `StartInstances`' output.
pub(super) const START_INSTANCES: &[Member] =
    &[m!("instancesSet" => "StartingInstances", L(INSTANCE_STATE_CHANGE))];

/// `TerminateInstances`' output.
pub(super) const TERMINATE_INSTANCES: &[Member] =
    &[m!("instancesSet" => "TerminatingInstances", L(INSTANCE_STATE_CHANGE))];

/// `CancelSpotInstanceRequests`' output.
pub(super) const CANCEL_SPOT_INSTANCE_REQUESTS: &[Member] = &[m!(
    "spotInstanceRequestSet" => "CancelledSpotInstanceRequests",
    L(CANCELLED_SPOT_INSTANCE_REQUEST)
)];

/// Converts a response's root element (`<StopInstancesResponse>`) with its output's members.
pub(super) fn structure(node: Node<'_, '_>, members: &[Member]) -> Map<String, Value> {
    let mut out = Map::new();
    for member in members {
        // boto3 looks members up by element name, whatever their order in the document.
        let Some(child) = node
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == member.xml)
        else {
            continue;
        };
        let key = if member.key.is_empty() {
            upper_first(member.xml)
        } else {
            member.key.to_owned()
        };
        out.insert(key, convert(child, member.ty));
    }
    out
}

fn convert(node: Node<'_, '_>, ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(text(node)),
        Ty::Int => {
            let t = text(node);
            t.trim()
                .parse::<i64>()
                .map_or(Value::String(t), Value::from)
        }
        Ty::Bool => Value::Bool(text(node).trim() == "true"),
        Ty::Time => Value::String(timestamp(&text(node))),
        Ty::Struct(members) => Value::Object(structure(node, members)),
        Ty::List(members) => Value::Array(
            items(node)
                .map(|item| Value::Object(structure(item, members)))
                .collect(),
        ),
        Ty::StrList => Value::Array(items(node).map(|i| Value::String(text(i))).collect()),
    }
}

fn items<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element())
}

/// An element's text (every text child: entities are already decoded), `""` when empty.
pub(super) fn text(node: Node<'_, '_>) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect()
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// A timestamp as `chaos` writes boto3's datetimes: Python's `isoformat()` of an aware UTC
/// datetime (`2026-11-25T15:24:32+00:00`, microseconds only when there are some). Text that
/// is no timestamp stays as it is.
pub(super) fn timestamp(text: &str) -> String {
    let Ok(parsed) = DateTime::parse_from_rfc3339(text.trim()) else {
        return text.to_owned();
    };
    let utc = parsed.with_timezone(&Utc);
    let micros = utc.nanosecond() / 1_000;
    let base = utc
        .with_nanosecond(0)
        .unwrap_or(utc)
        .to_rfc3339_opts(SecondsFormat::Secs, false);
    match base.strip_suffix("+00:00") {
        Some(head) if micros != 0 => format!("{head}.{micros:06}+00:00"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_become_botos_dict() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<StopInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
 <requestId>r-1</requestId>
 <instancesSet><item><instanceId>i-1</instanceId>
  <currentState><code>64</code><name>stopping</name></currentState>
  <previousState><code>16</code><name>running</name></previousState><unknown>x</unknown>
 </item></instancesSet>
</StopInstancesResponse>"#;
        let doc = roxmltree::Document::parse(xml).unwrap();
        let out = structure(doc.root_element(), STOP_INSTANCES);
        assert_eq!(
            Value::Object(out),
            serde_json::json!({"StoppingInstances": [{
                "InstanceId": "i-1",
                "CurrentState": {"Code": 64, "Name": "stopping"},
                "PreviousState": {"Code": 16, "Name": "running"},
            }]})
        );
    }

    #[test]
    fn model_order_renames_and_empty_elements() {
        let xml = "<DescribeInstancesResponse><reservationSet><item>\
            <instancesSet><item><instanceId>i-1</instanceId><architecture>x86_64</architecture>\
            <dnsName>ec2.example</dnsName><groupSet/><stateReason><code/></stateReason>\
            <hibernationOptions/><ebsOptimized>false</ebsOptimized>\
            <launchTime>2026-11-25T15:24:32.000Z</launchTime>\
            <monitoring><state>disabled</state></monitoring></item></instancesSet>\
            <ownerId>123456789012</ownerId></item></reservationSet></DescribeInstancesResponse>";
        let doc = roxmltree::Document::parse(xml).unwrap();
        let out = Value::Object(structure(doc.root_element(), DESCRIBE_INSTANCES));
        let reservation = &out["Reservations"][0];
        assert_eq!(reservation["OwnerId"], "123456789012");
        let instance = &reservation["Instances"][0];
        let keys: Vec<&str> = instance
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "Architecture",
                "EbsOptimized",
                "SecurityGroups",
                "StateReason",
                "HibernationOptions",
                "InstanceId",
                "PublicDnsName",
                "LaunchTime",
                "Monitoring"
            ]
        );
        assert_eq!(instance["SecurityGroups"], serde_json::json!([]));
        assert_eq!(instance["StateReason"], serde_json::json!({"Code": ""}));
        assert_eq!(instance["HibernationOptions"], serde_json::json!({}));
        assert_eq!(instance["EbsOptimized"], false);
        assert_eq!(instance["LaunchTime"], "2026-11-25T15:24:32+00:00");
    }

    #[test]
    fn timestamps_as_python_isoformat() {
        assert_eq!(
            timestamp("2026-11-25T15:24:32.000Z"),
            "2026-11-25T15:24:32+00:00"
        );
        assert_eq!(
            timestamp("2026-11-25T15:24:32.25Z"),
            "2026-11-25T15:24:32.250000+00:00"
        );
        assert_eq!(
            timestamp("2026-11-25T17:24:32+02:00"),
            "2026-11-25T15:24:32+00:00"
        );
        assert_eq!(timestamp("yesterday"), "yesterday");
    }
}
