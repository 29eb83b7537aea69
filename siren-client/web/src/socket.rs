//! The page's WebSocket as a carrier of frames (PROTOCOL.md §5.1): one binary message is one
//! frame. The browser's callbacks push what arrives into an inbox; [`Socket::next`] takes from
//! it, so a caller that stops waiting loses nothing (the session's `recv` must be cancel-safe).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// How a WebSocket failed or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// The browser refused to open it (a bad URL, a port it blocks).
    #[error("cannot open the WebSocket: {0}")]
    Open(String),
    /// It closed; the server's close code and reason, when it sent them.
    #[error("the connection closed ({code}{})", reason_suffix(reason))]
    Closed {
        /// The close code (1006 when the connection broke without a close frame).
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The server sent a text message (the protocol is binary only).
    #[error("the server sent a text message")]
    Text,
    /// A message larger than this side accepts.
    #[error("a message of {len} bytes is larger than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Sending failed (the socket is closing).
    #[error("cannot send: {0}")]
    Send(String),
}

/// What the callbacks saw, waiting to be taken.
#[derive(Default)]
struct Inbox {
    open: bool,
    messages: VecDeque<Result<Vec<u8>, SocketError>>,
    closed: Option<SocketError>,
    waker: Option<Waker>,
}

impl Inbox {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// An open (or opening) WebSocket and its callbacks.
pub struct Socket {
    ws: WebSocket,
    inbox: Rc<RefCell<Inbox>>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Starts opening `url` (`ws://…/ws` or `wss://…/ws`); [`Socket::opened`] waits for it.
    pub fn connect(url: &str) -> Result<Socket, SocketError> {
        let ws = WebSocket::new(url).map_err(|e| SocketError::Open(describe(&e)))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inbox = Rc::new(RefCell::new(Inbox::default()));

        let on_open = {
            let inbox = inbox.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let mut inbox = inbox.borrow_mut();
                inbox.open = true;
                inbox.wake();
            })
        };
        let on_message = {
            let inbox = inbox.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let message = match data.dyn_into::<ArrayBuffer>() {
                    Ok(buffer) => Ok(Uint8Array::new(&buffer).to_vec()),
                    Err(_) => Err(SocketError::Text),
                };
                let mut inbox = inbox.borrow_mut();
                inbox.messages.push_back(message);
                inbox.wake();
            })
        };
        let on_close = {
            let inbox = inbox.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                let mut inbox = inbox.borrow_mut();
                inbox.closed.get_or_insert(SocketError::Closed {
                    code: event.code(),
                    reason: event.reason(),
                });
                inbox.wake();
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            inbox,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Waits until the WebSocket is open (or failed to open).
    pub async fn opened(&self) -> Result<(), SocketError> {
        poll_fn(|cx| {
            let mut inbox = self.inbox.borrow_mut();
            // Open first: a server that opened and at once closed with an error frame has
            // messages to read.
            if inbox.open {
                return Poll::Ready(Ok(()));
            }
            if let Some(closed) = &inbox.closed {
                return Poll::Ready(Err(closed.clone()));
            }
            inbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next message, at most `max` bytes. Cancel-safe: a message is taken from the inbox
    /// only when it is returned. Messages that arrived before a close are returned first.
    pub async fn next(&self, max: usize) -> Result<Vec<u8>, SocketError> {
        let message = poll_fn(|cx| {
            let mut inbox = self.inbox.borrow_mut();
            if let Some(message) = inbox.messages.pop_front() {
                return Poll::Ready(message);
            }
            if let Some(closed) = &inbox.closed {
                return Poll::Ready(Err(closed.clone()));
            }
            inbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        if message.len() > max {
            return Err(SocketError::TooLarge {
                len: message.len(),
                max,
            });
        }
        Ok(message)
    }

    /// Sends one binary message.
    pub fn send(&self, bytes: &[u8]) -> Result<(), SocketError> {
        if let Some(closed) = &self.inbox.borrow().closed {
            return Err(closed.clone());
        }
        self.ws
            .send_with_u8_array(bytes)
            .map_err(|e| SocketError::Send(describe(&e)))
    }

    /// Closes it with `code` (a page may send only 1000 and 3000–4999) and a short reason.
    pub fn close(&self, code: u16, reason: &str) {
        // Fails only for a code the browser does not let pages send, or a reason over 123
        // bytes: the connection then just closes without them.
        if self.ws.close_with_code_and_reason(code, reason).is_err() {
            let _ = self.ws.close();
        }
    }
}

impl Drop for Socket {
    /// The callbacks are freed with the socket: unhook them first, then close.
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// `": reason"`, or nothing for an empty reason.
fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// A JavaScript exception's message.
fn describe(value: &wasm_bindgen::JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map_or_else(|| format!("{value:?}"), |e| String::from(e.message()))
}
