// apotflow_rom: synchronous-read ROM with two read ports, loaded by $readmemh.
// INIT_FILE is resolved against the working directory of the simulator or synthesis tool
// (Verilator: where the binary runs; yosys: where yosys was started). One word per line, hex.
module apotflow_rom #(
    parameter WIDTH = 8,
    parameter DEPTH = 256,
    parameter ABITS = 8,
    parameter INIT_FILE = ""
) (
    input  wire             clk,
    input  wire [ABITS-1:0] addr_a,
    output reg  [WIDTH-1:0] data_a,
    input  wire [ABITS-1:0] addr_b,
    output reg  [WIDTH-1:0] data_b
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    initial begin
        if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
    end
    always @(posedge clk) begin
        data_a <= mem[addr_a];
        data_b <= mem[addr_b];
    end
endmodule

// apotflow_ram: one synchronous read port, one write port, no initial contents (the activation
// banks). A read and a write of the same word in one cycle returns the old word.
module apotflow_ram #(
    parameter WIDTH = 8,
    parameter DEPTH = 256,
    parameter ABITS = 8
) (
    input  wire             clk,
    input  wire [ABITS-1:0] raddr,
    output reg  [WIDTH-1:0] rdata,
    input  wire             we,
    input  wire [ABITS-1:0] waddr,
    input  wire [WIDTH-1:0] wdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk) begin
        rdata <= mem[raddr];
        if (we) mem[waddr] <= wdata;
    end
endmodule

// apotflow_ram_split: apotflow_ram whose rows from SPLIT on live in a second array marked for
// distributed RAM (ECP5 LUT RAM), so that a bank a little deeper than one block shape (2048 x 9)
// takes one block and some LUT RAM instead of two blocks. SPLIT is a power of two, DEPTH <= 2 x SPLIT;
// a row past DEPTH reads an unspecified word (the caller masks it). The tail registers its read
// address (as a block RAM does) and is read asynchronously in the next cycle: the same latency, but
// the address logic and the LUT RAM's read mux are in different cycles. A tail row read in the cycle
// it is written returns the new word (the block-RAM rows: the old one); the pipeline never reads a word
// in the cycle it writes it (a layer's output never overlaps its inputs).
module apotflow_ram_split #(
    parameter WIDTH = 8,
    parameter DEPTH = 256,
    parameter ABITS = 8,
    parameter SPLIT = 128,
    parameter SBITS = 7
) (
    input  wire             clk,
    input  wire [ABITS-1:0] raddr,
    output wire [WIDTH-1:0] rdata,
    input  wire             we,
    input  wire [ABITS-1:0] waddr,
    input  wire [WIDTH-1:0] wdata
);
    reg [WIDTH-1:0] lo [0:SPLIT-1];
    (* ram_style = "distributed" *) reg [WIDTH-1:0] hi [0:DEPTH-SPLIT-1];
    reg [WIDTH-1:0] lo_q;
    reg [SBITS-1:0] hi_a;
    reg sel_q;
    wire w_hi = waddr >= SPLIT;
    always @(posedge clk) begin
        lo_q <= lo[raddr[SBITS-1:0]];
        hi_a <= raddr[SBITS-1:0];
        sel_q <= raddr >= SPLIT;
        if (we && !w_hi) lo[waddr[SBITS-1:0]] <= wdata;
        if (we && w_hi) hi[waddr[SBITS-1:0]] <= wdata;
    end
    assign rdata = sel_q ? hi[hi_a] : lo_q;
endmodule
