//! The one SVG writer behind the book's figures: the table's plot ([`plot`](crate::plot)),
//! the pictures drawn from real runs ([`pictures`](crate::pictures)) and the network
//! benchmark's chart (the `net` binary).
//!
//! A figure this small needs no plotting crate: a few dozen elements, written by hand so
//! that the file diffs cleanly when the figures change. Every figure is self-contained (no
//! script, no link, no font to fetch: `.ci/pictures` checks) and carries a text
//! alternative for screen readers (`role="img"`, `aria-label` and `<title>`).
//!
//! Every piece of text that goes into the markup goes through [`escape`], in an element's
//! text or in an attribute's value alike.

use std::fmt;

/// An SVG document being written: [`Svg::new`] opens it, `writeln!` adds elements (one per
/// line), [`Svg::finish`] closes it.
#[derive(Debug, Clone)]
pub struct Svg {
    out: String,
}

impl Svg {
    /// Opens a `width` by `height` picture on a white background, titled `title` (its
    /// text alternative), with `style` as its style sheet (CSS rules, one per line).
    pub fn new(width: f64, height: f64, title: &str, style: &str) -> Svg {
        let title = escape(title);
        Svg {
            out: format!(
                r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0}" width="{width}" height="{height:.0}" role="img" aria-label="{title}">
<title>{title}</title>
<style>
{style}</style>
<rect width="100%" height="100%" fill="#fff"/>
"##
            ),
        }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// Writing into the document's `String`, which cannot fail: callers may ignore the
/// `fmt::Result` of `writeln!`.
impl fmt::Write for Svg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

/// `text` made safe for SVG, both as an element's text and inside an attribute's quotes
/// (single or double): `&`, `<`, `>`, `"` and `'` become entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    #[test]
    fn markup_characters_become_entities_everywhere() {
        assert_eq!(
            escape(r#"a < b && "c" > 'd'"#),
            "a &lt; b &amp;&amp; &quot;c&quot; &gt; &#39;d&#39;"
        );
        assert_eq!(escape("plain: 1,000 req/s"), "plain: 1,000 req/s");
    }

    #[test]
    fn a_document_has_its_text_alternative_and_closes() {
        let mut svg = Svg::new(100.0, 50.4, r#"say "hi" & <go>"#, "text { fill: #222; }\n");
        let _ = writeln!(svg, r#"<circle cx="1" cy="2" r="3"/>"#);
        let svg = svg.finish();
        assert!(svg.starts_with("<svg xmlns="), "{svg}");
        assert!(svg.contains(r#"height="50" role="img""#), "{svg}");
        assert!(
            svg.contains(r#"aria-label="say &quot;hi&quot; &amp; &lt;go&gt;">"#),
            "{svg}"
        );
        assert!(
            svg.contains("<title>say &quot;hi&quot; &amp; &lt;go&gt;</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<style>\ntext { fill: #222; }\n</style>\n"),
            "{svg}"
        );
        assert!(
            svg.ends_with("<circle cx=\"1\" cy=\"2\" r=\"3\"/>\n</svg>\n"),
            "{svg}"
        );
    }
}
