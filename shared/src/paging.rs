//! One pager for every listing, and one reader per envelope shape the systems page with.
//!
//! Each client says how to ask for a page (its own auth, path and query) and which envelope
//! comes back; [`all`] walks the pages and asks the client's guard after every page, so a
//! server that ignores `$skip` or links in a circle ends in a failure instead of a loop.
//!
//! | shape | who | how the next page is found |
//! |---|---|---|
//! | [`bare_or_value`] `[…]` / OData `{value}` | Tapkey | `$skip` moves on until a short page |
//! | [`items_or_bare`] `{items, next_page_link}` / `[…]` | Salto KS | the link as given; a bare array until an empty page |
//! | [`data_offset`] `{data, offset, pageSize, count}` | Brivo | `offset` moves on until a short page |
//! | [`records`] `{Records, HasNextPage, …}` | Nexudus | `page` + 1 while `HasNextPage` |
//! | [`numbered`] `{items, next_page}` | Kinnovis (Portier's contract) | the page number it names |

use std::future::Future;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CallError;
use crate::http::{Api, Reply};

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Items listed so far: the next `$skip` or `offset`.
    pub listed: usize,
    /// The page to ask for, from 1 (Nexudus, Kinnovis).
    pub page: u32,
    /// The link the server gave for this page (Salto KS `next_page_link`), not yet resolved.
    pub link: Option<String>,
}

/// One page's items and where the next one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Next,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// This was the last page.
    Done,
    /// The page after this one: `$skip`/`offset` at the items listed, page number + 1.
    Following,
    /// The page the server numbered.
    Numbered(u32),
    /// The link the server gave.
    Link(String),
}

/// Every item of a listing: `fetch` asks for the page at a cursor; `guard(listed, pages,
/// more)` runs after every page (the last one too) and may refuse to go on.
pub async fn all<T, E, F, Fut, G>(mut fetch: F, guard: G) -> Result<Vec<T>, E>
where
    F: FnMut(Cursor) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
    G: Fn(usize, u32, bool) -> Result<(), CallError>,
    E: From<CallError>,
{
    let mut all = Vec::new();
    let mut cursor = Cursor { listed: 0, page: 1, link: None };
    let mut pages = 0u32;
    loop {
        let page = fetch(cursor.clone()).await?;
        pages = pages.saturating_add(1);
        all.extend(page.items);
        guard(all.len(), pages, page.next != Next::Done)?;
        let following = cursor.page.saturating_add(1);
        cursor = match page.next {
            Next::Done => return Ok(all),
            Next::Following => Cursor { listed: all.len(), page: following, link: None },
            Next::Numbered(n) => Cursor { listed: all.len(), page: n, link: None },
            Next::Link(l) => Cursor { listed: all.len(), page: following, link: Some(l) },
        };
    }
}

/// `req` with the page's parameters in the system's order (`$top`/`$skip`, `offset`/`pageSize`,
/// …) and, when given, the listing's filter parameter after them.
pub fn with_query(
    req: reqwest::RequestBuilder,
    page: &[(&str, usize)],
    filter: Option<(&str, &str)>,
) -> reqwest::RequestBuilder {
    let req = req.query(page);
    match filter {
        Some(f) => req.query(&[f]),
        None => req,
    }
}

/// A page that is the last one when it holds fewer than `asked` items.
fn until_short<T>(items: Vec<T>, asked: usize) -> Page<T> {
    let next = if items.len() < asked { Next::Done } else { Next::Following };
    Page { items, next }
}

/// Tapkey: collections are bare arrays; an OData `{"value": […]}` envelope is accepted too.
pub fn bare_or_value<T: DeserializeOwned>(
    reply: &Reply,
    api: &Api,
    asked: usize,
) -> Result<Page<T>, CallError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Body<T> {
        Bare(Vec<T>),
        Envelope { value: Vec<T> },
    }
    reply.json::<Body<T>>(api).map(|b| match b {
        Body::Bare(v) | Body::Envelope { value: v } => until_short(v, asked),
    })
}

/// Salto KS: bare arrays in some answers, `{items, next_page_link, count}` in others. A link
/// is followed whatever the page's length (Salto KS may page by fewer than `$top` asks); an
/// envelope without one is the last page. A bare array carries no link, so `$skip` moves on
/// until an empty page: a short page is no proof of the end.
pub fn items_or_bare<T: DeserializeOwned>(reply: &Reply, api: &Api) -> Result<Page<T>, CallError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Body<T> {
        Bare(Vec<T>),
        Envelope {
            items: Vec<T>,
            #[serde(default)]
            next_page_link: Option<String>,
        },
    }
    reply.json::<Body<T>>(api).map(|b| match b {
        Body::Bare(items) => {
            let next = if items.is_empty() { Next::Done } else { Next::Following };
            Page { items, next }
        }
        Body::Envelope { items, next_page_link } => {
            let link = next_page_link.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
            Page { items, next: link.map_or(Next::Done, Next::Link) }
        }
    })
}

/// Brivo: `{data, offset, pageSize, count}`, the last page shorter than `asked`.
pub fn data_offset<T: DeserializeOwned>(
    reply: &Reply,
    api: &Api,
    asked: usize,
) -> Result<Page<T>, CallError> {
    #[derive(Deserialize)]
    struct Body<T> {
        #[serde(default = "Vec::new")]
        data: Vec<T>,
    }
    reply.json::<Body<T>>(api).map(|b| until_short(b.data, asked))
}

/// Nexudus: `{Records, HasNextPage, …}`; an empty page ends it whatever `HasNextPage` says.
pub fn records<T: DeserializeOwned>(reply: &Reply, api: &Api) -> Result<Page<T>, CallError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body<T> {
        records: Vec<T>,
        #[serde(default)]
        has_next_page: bool,
    }
    reply.json::<Body<T>>(api).map(|b| {
        let done = !b.has_next_page || b.records.is_empty();
        Page { items: b.records, next: if done { Next::Done } else { Next::Following } }
    })
}

/// Kinnovis (Portier's contract): `{items, next_page}`; a `next_page` that does not move past
/// `page` is refused rather than asked for again.
pub fn numbered<T: DeserializeOwned>(reply: &Reply, api: &Api, page: u32) -> Result<Page<T>, CallError> {
    #[derive(Deserialize)]
    struct Body<T> {
        items: Vec<T>,
        #[serde(default)]
        next_page: Option<u32>,
    }
    let body: Body<T> = reply.json(api)?;
    let next = match body.next_page {
        None => Next::Done,
        Some(n) if n > page => Next::Numbered(n),
        Some(n) => {
            return Err(CallError::permanent(format!(
                "{} answered page {page} with next_page {n}, which does not move forward",
                api.name
            )));
        }
    };
    Ok(Page { items: body.items, next })
}

/// A guard that refuses a listing still claiming more pages after `max` of them.
pub fn at_most_pages(
    api: &'static str,
    what: &str,
    max: u32,
) -> impl Fn(usize, u32, bool) -> Result<(), CallError> {
    let what = what.to_owned();
    move |_, pages, more| {
        if more && pages >= max {
            return Err(CallError::permanent(format!("{api} still reported more {what} after {max} pages")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    const API: Api = Api::new("Test");

    fn reply(body: &str) -> Reply {
        Reply { status: StatusCode::OK, headers: Default::default(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn each_shape_says_where_the_next_page_is() {
        let p: Page<u8> = bare_or_value(&reply("[1,2]"), &API, 2).expect("bare");
        assert_eq!(p.next, Next::Following);
        let p: Page<u8> = bare_or_value(&reply(r#"{"value":[1]}"#), &API, 2).expect("value");
        assert_eq!((p.items, p.next), (vec![1], Next::Done));
        let p: Page<u8> =
            items_or_bare(&reply(r#"{"items":[1],"next_page_link":" /n "}"#), &API).expect("env");
        assert_eq!(p.next, Next::Link("/n".into()));
        let p: Page<u8> = items_or_bare(&reply(r#"{"items":[1],"next_page_link":""}"#), &API).expect("env");
        assert_eq!(p.next, Next::Done, "an envelope without a link is the last page");
        let p: Page<u8> = items_or_bare(&reply("[1]"), &API).expect("bare");
        assert_eq!(p.next, Next::Following, "a short bare page proves nothing");
        let p: Page<u8> = items_or_bare(&reply("[]"), &API).expect("bare");
        assert_eq!(p.next, Next::Done);
        let p: Page<u8> =
            data_offset(&reply(r#"{"data":[1],"offset":0,"pageSize":1,"count":9}"#), &API, 1).expect("brivo");
        assert_eq!(p.next, Next::Following);
        let p: Page<u8> = records(&reply(r#"{"Records":[],"HasNextPage":true}"#), &API).expect("nexudus");
        assert_eq!(p.next, Next::Done, "an empty page ends it");
        let p: Page<u8> = numbered(&reply(r#"{"items":[1],"next_page":3}"#), &API, 2).expect("kinnovis");
        assert_eq!(p.next, Next::Numbered(3));
        assert!(numbered::<u8>(&reply(r#"{"items":[1],"next_page":2}"#), &API, 2).is_err());
        assert!(records::<u8>(&reply("not json"), &API).is_err());
    }

    #[tokio::test]
    async fn the_pager_walks_cursors_and_obeys_its_guard() {
        let mut seen = Vec::new();
        let got: Result<Vec<u32>, CallError> = all(
            |c: Cursor| {
                seen.push(c.clone());
                let page = match c.page {
                    1 => Page { items: vec![1, 2], next: Next::Following },
                    2 => Page { items: vec![3], next: Next::Link("/three".into()) },
                    3 => Page { items: vec![4], next: Next::Numbered(7) },
                    _ => Page { items: vec![5], next: Next::Done },
                };
                async move { Ok(page) }
            },
            |_, _, _| Ok(()),
        )
        .await;
        assert_eq!(got.expect("listed"), vec![1, 2, 3, 4, 5]);
        assert_eq!(seen[1], Cursor { listed: 2, page: 2, link: None });
        assert_eq!(seen[2], Cursor { listed: 3, page: 3, link: Some("/three".into()) });
        assert_eq!(seen[3], Cursor { listed: 4, page: 7, link: None });

        let endless: Result<Vec<u32>, CallError> = all(
            |_| async { Ok(Page { items: vec![1], next: Next::Following }) },
            at_most_pages("Test", "things", 3),
        )
        .await;
        let e = endless.expect_err("refused");
        assert!(e.to_string().contains("still reported more things after 3 pages"), "{e}");
    }
}
