//! The adapter for filters built against `weft:filter@0.2.0`: each 0.2.0 import forwards to its
//! 0.3.0 implementation, converting the types that are the same in both but generated twice.
//! 0.3.0 only added to 0.2.0, so every 0.2.0 call has an exact 0.3.0 counterpart; the cost is a
//! conversion of an enum or a record, nothing per byte.

use wasmtime::component::Resource;

use super::HostState;
use super::http::{BodySlot, RequestSlot, ResponseSlot};
use crate::bindings::v02::weft::filter as old;
use crate::bindings::weft::filter as new;

type R<T> = wasmtime::Result<T>;

fn edit(result: Result<(), new::http::EditError>) -> Result<(), old::http::EditError> {
    result.map_err(|e| match e {
        new::http::EditError::InvalidName => old::http::EditError::InvalidName,
        new::http::EditError::InvalidValue => old::http::EditError::InvalidValue,
        new::http::EditError::InvalidPath => old::http::EditError::InvalidPath,
        new::http::EditError::ReadOnly => old::http::EditError::ReadOnly,
    })
}

impl old::http::Host for HostState {}

impl old::http::HostRequest for HostState {
    fn method(&mut self, r: Resource<RequestSlot>) -> R<String> {
        new::http::HostRequest::method(self, r)
    }
    fn path(&mut self, r: Resource<RequestSlot>) -> R<String> {
        new::http::HostRequest::path(self, r)
    }
    fn set_path(
        &mut self,
        r: Resource<RequestSlot>,
        path: String,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::set_path(self, r, path).map(edit)
    }
    fn scheme(&mut self, r: Resource<RequestSlot>) -> R<String> {
        new::http::HostRequest::scheme(self, r)
    }
    fn authority(&mut self, r: Resource<RequestSlot>) -> R<Option<String>> {
        new::http::HostRequest::authority(self, r)
    }
    fn header(&mut self, r: Resource<RequestSlot>, name: String) -> R<Option<Vec<u8>>> {
        new::http::HostRequest::header(self, r, name)
    }
    fn header_values(&mut self, r: Resource<RequestSlot>, name: String) -> R<Vec<Vec<u8>>> {
        new::http::HostRequest::header_values(self, r, name)
    }
    fn headers(&mut self, r: Resource<RequestSlot>) -> R<Vec<(String, Vec<u8>)>> {
        new::http::HostRequest::headers(self, r)
    }
    fn set_header(
        &mut self,
        r: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::set_header(self, r, name, value).map(edit)
    }
    fn append_header(
        &mut self,
        r: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::append_header(self, r, name, value).map(edit)
    }
    fn remove_header(
        &mut self,
        r: Resource<RequestSlot>,
        name: String,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::remove_header(self, r, name).map(edit)
    }
    fn client_address(&mut self, r: Resource<RequestSlot>) -> R<Option<String>> {
        new::http::HostRequest::client_address(self, r)
    }
    fn route_name(&mut self, r: Resource<RequestSlot>) -> R<Option<String>> {
        new::http::HostRequest::route_name(self, r)
    }
    fn listener_name(&mut self, r: Resource<RequestSlot>) -> R<String> {
        new::http::HostRequest::listener_name(self, r)
    }
    fn direction(&mut self, r: Resource<RequestSlot>) -> R<old::http::Direction> {
        Ok(match new::http::HostRequest::direction(self, r)? {
            new::http::Direction::Inbound => old::http::Direction::Inbound,
            new::http::Direction::Outbound => old::http::Direction::Outbound,
        })
    }
    fn peer_identity(&mut self, r: Resource<RequestSlot>) -> R<Option<String>> {
        new::http::HostRequest::peer_identity(self, r)
    }
    fn upstream(&mut self, r: Resource<RequestSlot>) -> R<Option<String>> {
        new::http::HostRequest::upstream(self, r)
    }
    fn set_upstream(
        &mut self,
        r: Resource<RequestSlot>,
        name: String,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::set_upstream(self, r, name).map(edit)
    }
    fn add_response_header(
        &mut self,
        r: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostRequest::add_response_header(self, r, name, value).map(edit)
    }
    fn drop(&mut self, r: Resource<RequestSlot>) -> R<()> {
        new::http::HostRequest::drop(self, r)
    }
}

impl old::http::HostResponse for HostState {
    fn status(&mut self, r: Resource<ResponseSlot>) -> R<u16> {
        new::http::HostResponse::status(self, r)
    }
    fn set_status(
        &mut self,
        r: Resource<ResponseSlot>,
        status: u16,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostResponse::set_status(self, r, status).map(edit)
    }
    fn header(&mut self, r: Resource<ResponseSlot>, name: String) -> R<Option<Vec<u8>>> {
        new::http::HostResponse::header(self, r, name)
    }
    fn header_values(&mut self, r: Resource<ResponseSlot>, name: String) -> R<Vec<Vec<u8>>> {
        new::http::HostResponse::header_values(self, r, name)
    }
    fn headers(&mut self, r: Resource<ResponseSlot>) -> R<Vec<(String, Vec<u8>)>> {
        new::http::HostResponse::headers(self, r)
    }
    fn set_header(
        &mut self,
        r: Resource<ResponseSlot>,
        name: String,
        value: Vec<u8>,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostResponse::set_header(self, r, name, value).map(edit)
    }
    fn append_header(
        &mut self,
        r: Resource<ResponseSlot>,
        name: String,
        value: Vec<u8>,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostResponse::append_header(self, r, name, value).map(edit)
    }
    fn remove_header(
        &mut self,
        r: Resource<ResponseSlot>,
        name: String,
    ) -> R<Result<(), old::http::EditError>> {
        new::http::HostResponse::remove_header(self, r, name).map(edit)
    }
    fn drop(&mut self, r: Resource<ResponseSlot>) -> R<()> {
        new::http::HostResponse::drop(self, r)
    }
}

impl old::http::HostBody for HostState {
    fn size(&mut self, r: Resource<BodySlot>) -> R<u64> {
        new::http::HostBody::size(self, r)
    }
    fn read(&mut self, r: Resource<BodySlot>) -> R<Vec<u8>> {
        new::http::HostBody::read(self, r)
    }
    fn write(&mut self, r: Resource<BodySlot>, contents: Vec<u8>) -> R<()> {
        new::http::HostBody::write(self, r, contents)
    }
    fn drop(&mut self, r: Resource<BodySlot>) -> R<()> {
        new::http::HostBody::drop(self, r)
    }
}

fn level(level: old::log::Level) -> new::log::Level {
    match level {
        old::log::Level::Trace => new::log::Level::Trace,
        old::log::Level::Debug => new::log::Level::Debug,
        old::log::Level::Info => new::log::Level::Info,
        old::log::Level::Warn => new::log::Level::Warn,
        old::log::Level::Error => new::log::Level::Error,
    }
}

impl old::log::Host for HostState {
    fn log(&mut self, l: old::log::Level, message: String) -> R<()> {
        new::log::Host::log(self, level(l), message)
    }
    fn enabled(&mut self, l: old::log::Level) -> R<bool> {
        new::log::Host::enabled(self, level(l))
    }
    fn report_panic(&mut self, message: String) -> R<()> {
        new::log::Host::report_panic(self, message)
    }
}

impl old::clock::Host for HostState {
    fn monotonic_now(&mut self) -> R<u64> {
        new::clock::Host::monotonic_now(self)
    }
    fn wall_now(&mut self) -> R<old::clock::Datetime> {
        let now = new::clock::Host::wall_now(self)?;
        Ok(old::clock::Datetime {
            seconds: now.seconds,
            nanoseconds: now.nanoseconds,
        })
    }
}

impl old::random::Host for HostState {
    fn random_bytes(&mut self, len: u32) -> R<Vec<u8>> {
        new::random::Host::random_bytes(self, len)
    }
    fn random_u64(&mut self) -> R<u64> {
        new::random::Host::random_u64(self)
    }
}

fn define(
    result: Result<u32, new::metrics::DefineError>,
) -> Result<u32, old::metrics::DefineError> {
    result.map_err(|e| match e {
        new::metrics::DefineError::InvalidName(m) => old::metrics::DefineError::InvalidName(m),
        new::metrics::DefineError::Conflict(m) => old::metrics::DefineError::Conflict(m),
        new::metrics::DefineError::InvalidBuckets => old::metrics::DefineError::InvalidBuckets,
    })
}

impl old::metrics::Host for HostState {
    fn define_counter(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
    ) -> R<Result<u32, old::metrics::DefineError>> {
        new::metrics::Host::define_counter(self, name, help, labels).map(define)
    }
    fn define_gauge(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
    ) -> R<Result<u32, old::metrics::DefineError>> {
        new::metrics::Host::define_gauge(self, name, help, labels).map(define)
    }
    fn define_histogram(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
        buckets: Vec<f64>,
    ) -> R<Result<u32, old::metrics::DefineError>> {
        new::metrics::Host::define_histogram(self, name, help, labels, buckets).map(define)
    }
    fn counter_add(&mut self, metric: u32, labels: Vec<String>, delta: u64) -> R<()> {
        new::metrics::Host::counter_add(self, metric, labels, delta)
    }
    fn gauge_set(&mut self, metric: u32, labels: Vec<String>, value: i64) -> R<()> {
        new::metrics::Host::gauge_set(self, metric, labels, value)
    }
    fn gauge_add(&mut self, metric: u32, labels: Vec<String>, delta: i64) -> R<()> {
        new::metrics::Host::gauge_add(self, metric, labels, delta)
    }
    fn histogram_observe(&mut self, metric: u32, labels: Vec<String>, value: f64) -> R<()> {
        new::metrics::Host::histogram_observe(self, metric, labels, value)
    }
}

impl old::token_bucket::Host for HostState {
    fn define(
        &mut self,
        name: String,
        spec: old::token_bucket::BucketSpec,
    ) -> R<Result<u32, old::token_bucket::DefineError>> {
        let spec = new::token_bucket::BucketSpec {
            capacity: spec.capacity,
            refill_amount: spec.refill_amount,
            refill_interval_ms: spec.refill_interval_ms,
            max_keys: spec.max_keys,
        };
        Ok(
            new::token_bucket::Host::define(self, name, spec)?.map_err(|e| match e {
                new::token_bucket::DefineError::InvalidName(m) => {
                    old::token_bucket::DefineError::InvalidName(m)
                }
                new::token_bucket::DefineError::InvalidSpec(m) => {
                    old::token_bucket::DefineError::InvalidSpec(m)
                }
            }),
        )
    }
    fn take(
        &mut self,
        family: u32,
        key: String,
        cost: u64,
    ) -> R<Result<old::token_bucket::TakeResult, old::token_bucket::TakeError>> {
        Ok(
            match new::token_bucket::Host::take(self, family, key, cost)? {
                Ok(t) => Ok(old::token_bucket::TakeResult {
                    allowed: t.allowed,
                    remaining: t.remaining,
                    retry_after_ms: t.retry_after_ms,
                    reset_after_ms: t.reset_after_ms,
                }),
                Err(new::token_bucket::TakeError::UnknownFamily) => {
                    Err(old::token_bucket::TakeError::UnknownFamily)
                }
                Err(new::token_bucket::TakeError::TooManyKeys) => {
                    Err(old::token_bucket::TakeError::TooManyKeys)
                }
            },
        )
    }
}
