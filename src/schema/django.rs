//! The Django adapter: `django.py`, run as `manage.py shell -c` in the
//! migration image with the request in `BERTH_SCHEMA_REQUEST`, reads
//! `django_migrations` through Django's own migration loader and executor
//! and prints one result line.

use crate::config::Framework;

use super::adapter::{Adapter, Invocation, Request, Response};

/// The script run in the migration image.
const SCRIPT: &str = include_str!("django.py");

/// Django, reached with `manage` (e.g. `python3 manage.py`).
pub struct Django {
    manage: Vec<String>,
}

impl Django {
    /// The adapter running `manage` in the image's working directory.
    pub fn new(manage: Vec<String>) -> Django {
        Django { manage }
    }
}

impl Adapter for Django {
    fn framework(&self) -> Framework {
        Framework::Django
    }

    fn invocation(&self, request: &Request) -> anyhow::Result<Invocation> {
        let _ = (request, SCRIPT, &self.manage);
        unimplemented!("part A")
    }

    fn parse(&self, log: &str) -> anyhow::Result<Response> {
        let _ = log;
        unimplemented!("part A")
    }
}
