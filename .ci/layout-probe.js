// Injected by .ci/check-layout into a copy of each built page (never into the book
// itself). Once the page has loaded and laid out, it measures what a reader sees and
// writes the result into <pre id="layout-report">, which the script reads back from
// Chromium's --dump-dom. One fact per line, `key value...`, no markup characters.
(function () {
    "use strict";
    function label(el) {
        // Where a block is: the nearest heading above it, and its first line.
        var heading = "";
        var all = document.querySelectorAll("main h1, main h2, main h3, main h4");
        for (var i = 0; i < all.length; i++) {
            if (all[i].compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) {
                heading = all[i].textContent.trim();
            }
        }
        // A folded block is named by its summary.
        var folded = el.closest("details");
        if (folded && folded.querySelector("summary")) {
            heading = folded.querySelector("summary").textContent.trim();
        }
        var first = (el.textContent || "").trim().split("\n")[0].slice(0, 60);
        return (heading.slice(0, 50) + " | " + first).replace(/[<>&\n]/g, " ");
    }
    function measure() {
        var out = [];
        var main = document.querySelector("main");
        var vw = window.innerWidth;
        out.push("viewport " + vw + " " + window.innerHeight);
        out.push("height " + document.documentElement.scrollHeight);
        out.push("page-width " + document.documentElement.scrollWidth);
        // Where each section starts, for a reader of the report who wants to know what
        // makes a page long.
        var heads = document.querySelectorAll("main h2, main h3");
        for (var h = 0; h < heads.length; h++) {
            out.push("section " + Math.round(heads[h].getBoundingClientRect().top + window.scrollY) + " " +
                heads[h].textContent.trim().replace(/[<>&\n]/g, " "));
        }
        // The tall blocks (listings, outputs, diffs), which is where a page's height goes.
        var blocks = main.querySelectorAll("pre, .side-by-side, table");
        for (var b = 0; b < blocks.length; b++) {
            var br = blocks[b].getBoundingClientRect();
            if (br.height >= 400) {
                out.push("tall " + Math.round(br.top + window.scrollY) + " " + Math.round(br.height) + " " +
                    label(blocks[b]));
            }
        }
        // Where each picture sits on the page, top and bottom, before anything opens.
        var pics = document.querySelectorAll("main img");
        for (var p = 0; p < pics.length; p++) {
            var r = pics[p].getBoundingClientRect();
            out.push("image " + pics[p].getAttribute("src") + " " + Math.round(r.top + window.scrollY) +
                " " + Math.round(r.bottom + window.scrollY));
        }
        // Japanese text: glyphs or tofu (the empty boxes drawn for a character that no
        // font has)? In each place that shows text in a font of its own, a few kanji and
        // kana are drawn on a canvas in that place's font, through the same fallback as
        // the page's text. A character drawn exactly like U+10FFFD, which no font has, is
        // tofu; so are different characters all drawn alike.
        var places = [["body", "main p"], ["heading", "main h1"], ["table", "main td"],
            ["sidebar", "#mdbook-sidebar a"], ["title", ".menu-title"], ["switch", ".lang-switch"]];
        var sample = ["日", "本", "語", "の", "文", "カ", "、"];
        function drawn(font, ch) {
            var canvas = document.createElement("canvas");
            canvas.width = canvas.height = 48;
            var g = canvas.getContext("2d");
            g.font = font;
            g.textBaseline = "top";
            g.fillText(ch, 4, 4);
            var data = g.getImageData(0, 0, 48, 48).data, hash = 0;
            for (var i = 3; i < data.length; i += 4) hash = (hash * 31 + data[i]) | 0;
            return hash;
        }
        for (var q = 0; q < places.length; q++) {
            var el = document.querySelector(places[q][1]);
            if (!el) continue;
            var st = getComputedStyle(el);
            var font = st.fontStyle + " " + st.fontWeight + " 32px " + st.fontFamily;
            var tofu = drawn(font, "\u{10FFFD}"), seen = {}, bad = 0, kinds = 0;
            for (var s = 0; s < sample.length; s++) {
                var h = drawn(font, sample[s]);
                if (h === tofu) bad++;
                if (!seen[h]) { seen[h] = true; kinds++; }
            }
            if (kinds === 1) bad = sample.length;
            out.push("cjk " + places[q][0] + " " + (bad ? "tofu " + bad + "/" + sample.length : "ok") +
                " " + st.fontFamily.replace(/[<>&\n]/g, " "));
        }

        // The link to the other edition (lang-switch.js), as written in the page.
        var other = document.querySelector(".lang-switch");
        if (other) out.push("switch " + other.getAttribute("href").replace(/[<>&\s]/g, ""));

        // Closed <details> hide what is in them: open them all, so that a folded block
        // that is too wide is caught too (the height above is measured before).
        var details = document.querySelectorAll("main details");
        for (var d = 0; d < details.length; d++) details[d].open = true;

        // Code blocks: too wide if, with every line kept whole, the text is wider than
        // the box. Output blocks wrap instead of scrolling at 1280 px, listings scroll;
        // either way the reader does not see a line as it is.
        var codes = main.querySelectorAll("pre > code");
        for (var c = 0; c < codes.length; c++) {
            var code = codes[c];
            var before = code.style.whiteSpace;
            code.style.whiteSpace = "pre";
            var wide = code.scrollWidth > code.clientWidth + 1;
            code.style.whiteSpace = before;
            if (!wide) continue;
            // How many characters fit, and which lines are longer: a line of prose (an
            // error message) may wrap; a line with columns (two spaces or a `|` inside)
            // is a table row, and a wrapped row is a table that no longer reads.
            var style = getComputedStyle(code);
            var probe = document.createElement("span");
            probe.style.font = style.font;
            probe.style.whiteSpace = "pre";
            probe.textContent = "0000000000000000000000000000000000000000";
            document.body.appendChild(probe);
            var charWidth = probe.getBoundingClientRect().width / 40;
            probe.remove();
            var inner = code.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            var columns = Math.floor(inner / charWidth);
            var lines = code.textContent.split("\n");
            var long = 0, rows = 0, longest = 0;
            for (var l = 0; l < lines.length; l++) {
                var n = lines[l].replace(/\s+$/, "").length;
                if (n > columns) {
                    long++;
                    if (/\S {2,}\S|\S \| \S|^\s*\|/.test(lines[l])) rows++;
                    if (n > longest) longest = n;
                }
            }
            var scrolls = style.whiteSpace === "pre" &&
                (style.overflowX === "auto" || style.overflowX === "scroll");
            var kind = scrolls ? "scrolls" : (rows > 0 ? "wraps-table" : "wraps-prose");
            out.push("wide-code " + kind + " " + long + "-lines longest " + longest + "/" + columns +
                " table-rows " + rows + " " + label(code));
        }
        // Tables, and the side-by-side diffs: too wide if the table is wider than what
        // holds it.
        var tables = main.querySelectorAll("table");
        for (var t = 0; t < tables.length; t++) {
            var table = tables[t];
            var box = table.parentElement;
            var width = box.clientWidth;
            if (table.scrollWidth > width + 1 || table.getBoundingClientRect().width > width + 1) {
                var bs = getComputedStyle(box);
                var tscroll = bs.overflowX === "auto" || bs.overflowX === "scroll";
                out.push("wide-table " + Math.round(table.getBoundingClientRect().width - width) + "px " +
                    (tscroll ? "scrolls" : "clipped") + " " + label(table));
            }
        }
        // Pictures wider than the column.
        var imgs = main.querySelectorAll("img");
        for (var m = 0; m < imgs.length; m++) {
            if (imgs[m].getBoundingClientRect().width > main.clientWidth + 1) {
                out.push("wide-image " + imgs[m].getAttribute("src"));
            }
        }
        var report = document.createElement("pre");
        report.id = "layout-report";
        report.textContent = "\n" + out.join("\n") + "\n";
        document.body.appendChild(report);
        // Measured inside a frame (a window narrower than headless Chromium allows):
        // hand the report to the page that holds the frame.
        if (window.parent !== window) window.parent.postMessage(report.textContent, "*");
    }
    window.addEventListener("load", function () {
        // After overflow.js and the fonts.
        var go = function () { setTimeout(measure, 50); };
        if (document.fonts && document.fonts.ready) document.fonts.ready.then(go); else go();
    });
})();
