// Marks every code block and side-by-side diff that is wider than its box, so that
// custom.css can shade its right edge: phone browsers hide scrollbars until touched, and
// a reader should see that an output goes on to the right.
(function () {
    "use strict";
    function mark() {
        var blocks = document.querySelectorAll("pre > code, .side-by-side");
        for (var i = 0; i < blocks.length; i++) {
            var el = blocks[i];
            el.classList.toggle("overflows", el.scrollWidth > el.clientWidth + 1);
        }
    }
    window.addEventListener("load", mark);
    window.addEventListener("resize", mark);
})();
