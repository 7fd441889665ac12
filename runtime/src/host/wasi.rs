//! WASI without blocking: the parts of `wasi:io` that Rust's standard library reaches for.
//!
//! wasmtime-wasi's synchronous bindings implement blocking stream and poll calls with
//! `Handle::block_on`, which panics on a tokio worker thread — and filters run on tokio worker
//! threads. A guest calling `println!` or `thread::sleep` must not take the proxy down, so these
//! functions are shadowed here: stream operations complete without waiting (guest stdout and
//! stderr are sinks), and a wait that cannot complete immediately traps the guest instead.

use futures_util::FutureExt;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::poll::{self, Pollable};
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi_io::bindings::wasi::io::poll::{
    Host as AsyncPoll, HostPollable as AsyncPollable,
};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};

use super::HostState;

/// The resource table, seen through the non-blocking implementations below.
pub(crate) struct NonBlocking<'a>(&'a mut ResourceTable);

struct HasNonBlocking;

impl HasData for HasNonBlocking {
    type Data<'a> = NonBlocking<'a>;
}

/// Replace wasmtime-wasi's blocking `wasi:io/poll` and `wasi:io/streams` in `linker`.
pub(crate) fn shadow_blocking_io(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<HostState, HasNonBlocking>(linker, |s| NonBlocking(s.table()))?;
    streams::add_to_linker::<HostState, HasNonBlocking>(linker, |s| NonBlocking(s.table()))?;
    linker.allow_shadowing(false);
    Ok(())
}

fn would_block() -> wasmtime::Error {
    wasmtime::format_err!(
        "the filter tried to block on wasi:io (a sleep or a wait); filters must not block"
    )
}

impl poll::Host for NonBlocking<'_> {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        let ready = AsyncPoll::poll(self.0, pollables)
            .now_or_never()
            .ok_or_else(would_block)??;
        Ok(ready)
    }
}

impl poll::HostPollable for NonBlocking<'_> {
    fn ready(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        AsyncPollable::ready(self.0, pollable)
            .now_or_never()
            .unwrap_or(Ok(false))
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        AsyncPollable::block(self.0, pollable)
            .now_or_never()
            .ok_or_else(would_block)?
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        AsyncPollable::drop(self.0, pollable)
    }
}

impl streams::Host for NonBlocking<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl streams::HostOutputStream for NonBlocking<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        AsyncOutput::drop(self.0, stream)
            .now_or_never()
            .unwrap_or(Ok(()))
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let flush = Resource::new_borrow(stream.rep());
        streams::HostOutputStream::write(self.0, stream, bytes)?;
        streams::HostOutputStream::flush(self.0, flush)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let flush = Resource::new_borrow(stream.rep());
        streams::HostOutputStream::write_zeroes(self.0, stream, len)?;
        streams::HostOutputStream::flush(self.0, flush)
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }
}

impl streams::HostInputStream for NonBlocking<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        AsyncInput::drop(self.0, stream)
            .now_or_never()
            .unwrap_or(Ok(()))
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}
